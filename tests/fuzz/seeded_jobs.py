"""Jobs of two owners in every state the API shows, for the fuzzers and the security tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from jobstate.jobs import JobStore
from jobstate.layout import output_key

OWNER_A = "9f0c1d2e-3b4a-4c5d-8e6f-7a8b9c0d1e2f"
OWNER_B = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"


@dataclass
class SeededJobs:
    owner_of: dict[str, str] = field(default_factory=dict)  # job id -> owner (seeded and created later)
    seeded_ids: list[str] = field(default_factory=list)  # the seeded ones, in a fixed order

    def of(self, owner: str) -> list[str]:
        return sorted(job_id for job_id, who in self.owner_of.items() if who == owner)

    def not_of(self, owner: str | None) -> list[str]:
        return sorted(job_id for job_id, who in self.owner_of.items() if who != owner)


def seed_jobs(store: JobStore, owners: tuple[str, ...] = (OWNER_A, OWNER_B)) -> SeededJobs:
    """Per owner: CREATED, QUEUED, RUNNING (with a pending cancel) and SUCCEEDED (with outputs)."""
    seeded = SeededJobs()
    for owner in owners:
        created = store.create(owner, name="awaiting upload")
        queued = store.create(owner, status="QUEUED")
        running = store.create(owner, status="QUEUED")
        store.begin_stage(running.job_id, "hull")
        store.request_cancel(running.job_id, owner)
        done = store.create(owner, status="QUEUED")
        store.begin_stage(done.job_id, "export")
        store.succeed(done.job_id, {"model.glb": output_key(done.job_id, "model.glb")})
        for job in (created, queued, running, done):
            seeded.owner_of[job.job_id] = owner
    seeded.seeded_ids = sorted(seeded.owner_of)
    return seeded
