"""Events built in their wire form (``such_market.events.wire``) on cold paths: each is what its model would
build, byte for byte, and refuses what its model refuses."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from such_market.events.models import Event, UserUpdated, parse_detail
from such_market.events.wire import MAX_LIST_ITEMS, check_addresses
from such_market.users.service import user_updated

ADDRESS = "0x" + "ab" * 20


def test_user_updated_is_byte_for_byte_what_the_model_would_publish() -> None:
    built = user_updated(7, ["0x" + "CD" * 20, ADDRESS, "0x" + "cd" * 20])
    modelled = Event(
        UserUpdated(
            fid=7,
            wallets=(ADDRESS, "0x" + "cd" * 20),
            event_id=built.event_id,
            occurred_at=built.occurred_at,
        )
    )
    assert built.to_entry("bus", "such-market") == modelled.to_entry("bus", "such-market")
    assert built.detail_json() == modelled.detail_json()
    assert parse_detail("user.updated", orjson.loads(built.detail_json())) == modelled.detail


@pytest.mark.parametrize(
    ("fid", "wallets"),
    [
        (0, [ADDRESS]),
        (-3, [ADDRESS]),
        (7, ["0x1234"]),
        (7, [ADDRESS + "00"]),
        (7, ["0x" + f"{index:040x}" for index in range(MAX_LIST_ITEMS + 1)]),
    ],
)
def test_user_updated_refuses_what_the_model_refuses(fid: int, wallets: list[str]) -> None:
    with pytest.raises(ValidationError):
        UserUpdated(fid=fid, wallets=tuple(wallets))
    with pytest.raises(ValueError, match=r"fid|address"):
        user_updated(fid, wallets)


def test_the_list_bound_counts_distinct_wallets_as_the_model_does() -> None:
    wallets = ["0x" + f"{index:040x}" for index in range(MAX_LIST_ITEMS)]
    assert len(orjson.loads(user_updated(1, wallets + wallets).detail_json())["wallets"]) == MAX_LIST_ITEMS


def test_check_addresses_names_the_bad_item() -> None:
    assert check_addresses([ADDRESS.upper().replace("0X", "0x")]) == [ADDRESS]
    with pytest.raises(ValueError, match=r"address 1 \('nope'\)"):
        check_addresses([ADDRESS, "nope"])
