"""Farcaster mini-app notifications (SPEC §8): signed app events in, durable tokens, notifications out."""
