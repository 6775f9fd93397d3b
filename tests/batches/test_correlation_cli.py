"""`batch submit --id-field NAME --echo NAME` (contract §15), the command-line client in its own
process against a live server."""

import pytest

from batches.models import Batch, Upload
from tests.support.batch_files import jsonl

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "twins.jsonl"
    path.write_bytes(jsonl({"ref": f"r-{n}", "description": {"n": n}, "note": n} for n in range(3)))
    return path


def test_submit_sends_the_id_field_and_the_echoed_fields(cli, source):
    submitted = cli(
        "submit", str(source), "--operation", "create_twin",
        "--id-field", "ref", "--echo", "description", "--echo", "note, colour",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    batch = Batch.objects.get(pk=submitted.stdout.strip())
    assert (batch.id_field, batch.echo_fields) == ("ref", ["description", "note", "colour"])

    plain = cli("submit", str(source), "--operation", "create_twin")
    assert plain.returncode == 0, plain.stderr
    batch = Batch.objects.get(pk=plain.stdout.strip())
    assert (batch.id_field, batch.echo_fields) == ("", [])


@pytest.mark.parametrize(
    ("flags", "subcode"),
    [
        (["--echo", "note,note"], "invalid_echo_fields"),
        (["--echo", "note,"], "invalid_echo_fields"),
        (["--id-field", "r" * 129], "invalid_id_field"),
    ],
    ids=["repeated name", "empty name", "129 characters"],
)
def test_bad_names_are_refused_before_the_file_is_uploaded(cli, source, flags, subcode):
    refused = cli("submit", str(source), "--operation", "create_twin", *flags)
    assert refused.returncode == 2 and subcode in refused.stderr
    assert not Batch.objects.exists()
    assert not Upload.objects.exists(), "no upload URL was even asked for"
