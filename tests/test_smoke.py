from contentq.runtime.tracking import enqueue
from contentq.store.jobs import get_job
from tests.conftest import drain


def test_noop_job_succeeds(rt):
    row = enqueue(rt, "noop", "a")
    drain(rt, "maintenance")
    assert get_job(rt.store, row["id"])["status"] == "succeeded"
