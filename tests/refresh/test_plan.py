"""The pure decisions of the aggregated refresh."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from worker.handlers.refresh_plan import (
    BucketState,
    Claim,
    Work,
    claims_to_merge,
    covering_shares,
    decide_change,
    decide_refresh,
    due_wait,
    finish_claim,
    folder_of,
    is_ignored,
    parse_location,
    send_delay,
    share_folders,
    work_of,
)


@dataclass(frozen=True)
class Share:
    arn: str
    location: str


def state(**fields: object) -> BucketState:
    return BucketState.from_item({"target": "b", **fields})


@pytest.mark.parametrize(
    ("key", "folder"),
    [
        ("top.csv", "/"),
        ("a/b/c.csv", "/a/b/"),
        ("a/b/", "/a/"),  # a folder marker lives in its parent
        ("a/with space.txt", "/a/"),
    ],
)
def test_a_key_is_recorded_under_the_folder_that_holds_it(key: str, folder: str) -> None:
    assert folder_of(key) == folder


@pytest.mark.parametrize(
    ("arn", "bucket", "prefix"),
    [
        ("arn:aws:s3:::data", "data", ""),
        ("arn:aws:s3:::data/in/", "data", "in/"),
        ("arn:aws:s3:::data/in", "data", "in/"),
        ("arn:aws-cn:s3:::data/in/", "data", "in/"),
    ],
)
def test_share_locations_name_a_bucket_and_a_prefix(arn: str, bucket: str, prefix: str) -> None:
    location = parse_location(arn)
    assert location is not None
    assert (location.bucket, location.prefix) == (bucket, prefix)


def test_an_access_point_location_matches_no_bucket() -> None:
    assert parse_location("arn:aws:s3:us-east-1:123456789012:accesspoint/ap") is None


def test_a_changed_folder_is_refreshed_with_its_ancestors_relative_to_the_share() -> None:
    assert share_folders("", ["/a/b/"]) == {"/", "a", "a/b"}
    assert share_folders("in/", ["/in/x/y/"]) == {"/", "x", "x/y"}
    assert share_folders("in/", ["/in/"]) == {"/"}


def test_folders_outside_a_prefix_share_are_not_its_business() -> None:
    assert share_folders("in/", ["/out/", "/", "/inbox/"]) == set()


def test_covering_shares_are_those_on_the_bucket() -> None:
    shares = [
        Share("s1", "arn:aws:s3:::b"),
        Share("s2", "arn:aws:s3:::other"),
        Share("s3", "arn:aws:s3:::b/p/"),
    ]
    assert [s.arn for s in covering_shares("b", shares)] == ["s1", "s3"]


def test_each_covering_share_gets_its_own_folder_list() -> None:
    shares = [Share("root", "arn:aws:s3:::b"), Share("pre", "arn:aws:s3:::b/p/")]
    calls = decide_refresh(Work(frozenset({"/p/q/", "/x/"}), False), shares, 50)
    assert [(c.share_arn, c.folders, c.recursive) for c in calls] == [
        ("root", ("/", "p", "p/q", "x"), False),
        ("pre", ("/", "q"), False),
    ]


def test_a_share_no_change_falls_in_gets_no_refresh() -> None:
    calls = decide_refresh(Work(frozenset({"/x/"}), False), [Share("pre", "arn:aws:s3:::b/p/")], 50)
    assert calls == []


def test_past_the_folder_limit_the_share_root_is_refreshed_recursively() -> None:
    folders = frozenset(f"/f{i}/" for i in range(5))
    (call,) = decide_refresh(Work(folders, False), [Share("s", "arn:aws:s3:::b")], 5)
    assert (call.folders, call.recursive) == (("/",), True)


def test_untracked_changes_refresh_every_share_of_the_bucket_recursively() -> None:
    shares = [Share("a", "arn:aws:s3:::b"), Share("c", "arn:aws:s3:::b/p/")]
    calls = decide_refresh(Work(frozenset(), True), shares, 50)
    assert [(c.folders, c.recursive) for c in calls] == [(("/",), True), (("/",), True)]


@given(st.lists(st.text(alphabet="ab/", min_size=1, max_size=12), min_size=1, max_size=30))
def test_every_changed_key_is_covered_by_the_folder_list(keys: list[str]) -> None:
    keys = [k for k in keys if k.strip("/")]
    assume(keys)
    folders = frozenset(folder_of(k) for k in keys)
    (call,) = decide_refresh(Work(folders, False), [Share("s", "arn:aws:s3:::b")], 50)
    for key in keys:
        parent = key.rstrip("/").rpartition("/")[0].strip("/") or "/"
        assert call.recursive or parent in call.folders
    assert len(call.folders) <= 50


def test_the_write_that_opened_the_window_sends_its_due_message() -> None:
    decision = decide_change(
        state(token="mine", due=12.0), my_token="mine", now=10.0, redelivered=False, rescue_after=60
    )
    assert (decision.action, decision.token, decision.due) == ("opened", "mine", 12.0)


def test_a_change_inside_an_open_window_joins_it() -> None:
    decision = decide_change(
        state(token="t", due=12.0), my_token="mine", now=11.0, redelivered=False, rescue_after=60
    )
    assert decision.action == "joined"


def test_a_redelivered_change_sends_the_due_message_again() -> None:
    decision = decide_change(
        state(token="t", due=12.0), my_token="mine", now=11.0, redelivered=True, rescue_after=60
    )
    assert (decision.action, decision.token) == ("resend", "t")


def test_a_change_finding_a_long_overdue_window_rescues_it() -> None:
    decision = decide_change(
        state(token="t", due=12.0), my_token="mine", now=80.0, redelivered=False, rescue_after=60
    )
    assert decision.action == "rescue"


def test_a_window_rescued_recently_is_not_rescued_again() -> None:
    decision = decide_change(
        state(token="t", due=12.0, rescued_at=75.0),
        my_token="mine",
        now=80.0,
        redelivered=False,
        rescue_after=60,
    )
    assert decision.action == "joined"


def test_a_due_message_waits_until_its_time_in_hops_of_at_most_900_seconds() -> None:
    assert due_wait(5000.0, 1000.0) == 900
    assert due_wait(1010.0, 1000.0) == 10
    assert due_wait(1000.2, 1000.0) is None
    assert due_wait(990.0, 1000.0) is None


def test_send_delay_is_never_negative_nor_past_sqs_limit() -> None:
    assert send_delay(5.0, 10.0) == 0
    assert send_delay(10.2, 10.0) == 1
    assert send_delay(10_000.0, 10.0) == 900


def test_claims_decode_with_and_without_recorded_folders() -> None:
    decoded = state(
        claim_a={"at": 1, "by": "m1", "folders": {"/x/"}, "overflow": False},
        claim_b={"at": 2, "by": "m2"},
    )
    a, b = decoded.claims
    assert (a.token, a.folders, a.overflow) == ("a", frozenset({"/x/"}), False)
    assert (b.token, b.folders) == ("b", None)


def test_a_claim_whose_folders_were_never_recorded_refreshes_everything() -> None:
    work = work_of([Claim("a", 1, "m", frozenset({"/x/"}), False), Claim("b", 1, "m", None, False)])
    assert work == Work(frozenset({"/x/"}), True)


def test_a_claim_is_finished_by_its_own_message_or_after_it_went_stale() -> None:
    claim = Claim("a", 100.0, "m1", frozenset(), False)
    assert finish_claim(claim, "m1", 101.0)
    assert not finish_claim(claim, "m2", 101.0)
    assert finish_claim(claim, "m2", 100.0 + 901)


def test_only_stale_claims_of_other_windows_are_merged() -> None:
    current = state(
        claim_own={"at": 0, "by": "m"},
        claim_old={"at": 0, "by": "x"},
        claim_new={"at": 950, "by": "y"},
    )
    assert [c.token for c in claims_to_merge(current, "own", 1000.0)] == ["old"]


@pytest.mark.parametrize(
    ("principal", "ignored"),
    [
        ("AWS:AROAGW:share-session", True),
        ("AWS:AROAGW", True),
        ("AWS:AROAGWX:s", False),
        (None, False),
    ],
)
def test_changes_by_the_gateways_own_principal_are_ignored(
    principal: str | None, ignored: bool
) -> None:
    assert is_ignored(principal, ["AWS:AROAGW"]) is ignored
