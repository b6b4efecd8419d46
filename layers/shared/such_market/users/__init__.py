"""Farcaster users: profiles, their verified wallets, and which users own which wallets."""
