"""Jobs on disk: one SQLite table for state and settings, one folder per job for photos, frames and clips."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

STATES = ("uploading", "queued", "running", "done", "failed", "cancelled")
FINAL = ("done", "failed", "cancelled")
_COLUMNS = ("id", "state", "stage", "progress", "eta", "error", "settings", "preset", "source", "created",
            "started", "finished", "frames", "unet_evals", "seconds", "previews", "owner", "attempts", "outputs",
            "warnings", "names")
_ADDED = {"owner": "TEXT", "attempts": "INTEGER DEFAULT 0", "outputs": "TEXT", "warnings": "TEXT", "names": "TEXT"}
_JSON = ("settings", "preset", "unet_evals", "seconds", "outputs", "warnings", "names")


class JobStore:
    """Thread-safe access to the jobs table; every write is committed at once (a restart loses nothing)."""

    def __init__(self, home: str | Path):
        self.home = Path(home)
        (self.home / "jobs").mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.home / "studio.sqlite", check_same_thread=False)
        self._lock = threading.Lock()
        # WAL: readers (status polls, event streams) never wait for a writer's fsync; NORMAL syncs at
        # checkpoints, so a power cut may lose the last progress update but never corrupts the database.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._lock, self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, state TEXT, stage TEXT, progress REAL, "
                "eta REAL, error TEXT, settings TEXT, preset TEXT, source TEXT, created REAL, started REAL, "
                "finished REAL, frames INTEGER, unet_evals TEXT, seconds TEXT, previews INTEGER DEFAULT 0)")
            have = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
            for name, kind in _ADDED.items():  # a database from an older studio gains the new columns
                if name not in have:
                    self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")

    def folder(self, job_id: str) -> Path:
        return self.home / "jobs" / job_id

    def create(self, settings: dict, preset: dict, source: str | None = None, owner: str | None = None,
               outputs: dict | None = None, warnings: list[str] | None = None,
               names: list[str] | None = None) -> str:
        """A new job in state 'uploading': the runner ignores it until `update(id, state='queued')`."""
        job_id = uuid.uuid4().hex[:12]
        self.folder(job_id).mkdir(parents=True)
        with self._lock, self._db:
            self._db.execute("INSERT INTO jobs (id, state, stage, progress, settings, preset, source, created, "
                             "owner, attempts, outputs, warnings, names) "
                             "VALUES (?, 'uploading', 'uploading', 0, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
                             (job_id, json.dumps(settings), json.dumps(preset), source, time.time(), owner,
                              json.dumps(outputs or {}), json.dumps(warnings or []), json.dumps(names or [])))
        return job_id

    def update(self, job_id: str, **fields) -> None:
        fields = {k: json.dumps(v) if k in _JSON else v for k, v in fields.items()}
        with self._lock, self._db:
            self._db.execute(f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?",
                             (*fields.values(), job_id))

    def get(self, job_id: str) -> dict | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._row(row) if row else None

    def list(self, limit: int = 50, owner: str | None = None) -> list[dict]:
        """Newest first; only `owner`'s jobs when given (None: everyone's)."""
        where, args = ("WHERE owner = ? ", (owner,)) if owner is not None else ("", ())
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs {where}ORDER BY created DESC LIMIT ?",
                                    (*args, limit)).fetchall()
        return [self._row(r) for r in rows]

    def queued(self) -> list[str]:
        """Ids waiting to run, oldest first."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY created")]

    def requeue_interrupted(self, max_attempts: int = 2) -> int:
        """After a restart: a job that was running when the process died is queued again, once.

        `attempts` counts starts (a clean shutdown gives its start back), so a job found running with
        `max_attempts` starts has crashed the process that often: it fails with the reason instead of
        crashing every restart. Returns how many were queued again.
        """
        with self._lock, self._db:
            self._db.execute("UPDATE jobs SET state = 'failed', stage = 'failed', error = 'the upload was "
                             "interrupted by a server restart' WHERE state = 'uploading'")
            self._db.execute("UPDATE jobs SET state = 'failed', stage = 'failed', finished = ?, eta = NULL, "
                             "error = 'the studio stopped during this job ' || attempts || ' times (it may crash "
                             "the server): not retried again; try smaller settings' "
                             "WHERE state = 'running' AND attempts >= ?", (time.time(), max_attempts))
            return self._db.execute("UPDATE jobs SET state = 'queued', stage = 'queued', progress = 0 "
                                    "WHERE state = 'running'").rowcount

    @staticmethod
    def _row(row) -> dict:
        job = dict(zip(_COLUMNS, row))
        for k in _JSON:
            job[k] = json.loads(job[k]) if job[k] else None
        return job
