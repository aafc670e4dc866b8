"""The reason catalogue is closed: README documents exactly it, and the code uses nothing else."""

from __future__ import annotations

import pathlib
import re

import pytest

from pinsync import ipfs, reasons
from pinsync.backends import errors, ipfscluster

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PACKAGE = ROOT / "operator" / "pinsync"


def readme_table() -> list[tuple[str, bool, str, str]]:
    block = README.split("<!-- reasons:begin -->", 1)[1].split("<!-- reasons:end -->", 1)[0]
    rows = []
    for line in block.strip().splitlines()[2:]:  # after the header and the rule
        name, retryable, where, meaning = (cell.strip() for cell in line.strip("|").split("|"))
        rows.append((name.strip("`"), {"yes": True, "no": False}[retryable], where, meaning))
    return rows


def test_readme_reason_table_is_the_catalogue_in_order() -> None:
    expected = [(r.name, r.retryable, r.condition, r.meaning) for r in reasons.CATALOGUE.values()]
    assert readme_table() == expected


def test_every_reason_readme_names_for_a_condition_is_in_the_catalogue() -> None:
    conditions_table = README.split("| Condition | True when |", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`([A-Z][A-Za-z]+)`", conditions_table))
    named -= {"Ready", "Reconciling", "Stalled", "Healthy", "Synced"} - set(reasons.CATALOGUE)
    assert named - set(reasons.CATALOGUE) == set()


LITERAL_REASON = re.compile(
    r"""reason\s*=\s*"([A-Za-z]+)"|"""  # reason="X", reason = "X"
    r"""conditions\.(?:stalled|reconciling|ready)\(\s*"([A-Za-z]+)"|"""
    r"""conditions\.(?:synced|condition)\([^)]*?,\s*(?:True|False),\s*"([A-Za-z]+)\""""
)


def test_no_module_uses_a_reason_outside_the_catalogue() -> None:
    found = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in PACKAGE.rglob("*.py")
        for match in LITERAL_REASON.finditer(path.read_text())
        for name in match.groups()
        if name and name not in reasons.CATALOGUE
    }
    assert found == set()


def test_an_error_with_a_reason_outside_the_catalogue_is_refused() -> None:
    with pytest.raises(ValueError, match=r"not in pinsync\.reasons\.CATALOGUE"):
        errors.BackendError("x", reason="SomethingNew")


@pytest.mark.parametrize(
    "cls",
    [
        *(c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)),
        ipfscluster.Rejected,
        ipfscluster.ClusterError,
        ipfs.IpfsError,
        ipfs.PinTimeout,
        ipfs.ContentUnavailable,
        ipfs.NodeUnreachable,
    ],
)
def test_every_error_class_has_a_catalogue_reason_and_its_retryability(
    cls: type[reasons.ReasonedError],
) -> None:
    error = cls("x")
    assert reasons.get(error.reason).retryable is error.retryable


def test_a_specific_reason_sets_the_retryability_of_the_catalogue() -> None:
    error = errors.LocationNotFound("x", reason=reasons.BUCKET_NOT_FOUND)
    assert (error.reason, error.retryable) == ("BucketNotFound", False)
    assert errors.InProgress("x").retryable


def test_stalled_reasons_are_not_retryable_and_reconciling_ones_are() -> None:
    for entry in reasons.CATALOGUE.values():
        if entry.condition == "Stalled":
            assert not entry.retryable, entry.name
        if entry.condition == "Reconciling":
            assert entry.retryable, entry.name
