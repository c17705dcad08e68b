"""GPU phases as batch jobs: each measurement (and correctness command) written as a self-contained bundle
and run through a user's runner command (`--gpu-cmd`, `target.gpu_cmd`).

A bundle is a folder mirroring the part of the run folder one phase needs: the frozen harness
(`freeze/`), the trees the job launches (tracked files only, under `work/`), the job JSON with every
run-folder path written as `{bundle}/...`, a `run.sh` entry and `bundle.json` (every file's hash). On
the GPU machine `run.sh` runs the frozen harness's `perfloop.loop.remote` entry, which resolves the
paths, runs `perfloop.loop.process_backend` (or the shell command), and leaves `out/`:
`result.json` (exit code, stdout, the hash of every other file), `record.json`, `child.log`, and
`run/<path in the run folder>` for the files the phase wrote. The loop hash-checks `out/` against
`result.json`, copies `run/` into the run folder and returns the record as a local child would.

A bundle's folder is named by its hash, so `goal import` can hand in the `out/` of a job run by hand
and `goal resume` uses it instead of running the job again.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path
from typing import Any

from pydantic import Field

from perfloop.ledger.records import Record
from perfloop.ledger.store import atomic_write_model, sha256_file
from perfloop.loop import harness
from perfloop.loop.patchers.tools import HIDDEN_ENV
from perfloop.loop.process_backend import INTEGRITY, IntegrityError, MeasureError, ProcessBackend, _threads
from perfloop.loop.secrets import redact

JOBS = "work/jobs"  # bundles and what came back; scratch, never recorded (the phase's records are)
TOKEN = "{bundle}"
UNHASHED = frozenset({"result.json", "child.log"})  # the job's own report and its log
MANUAL = "manual"  # --gpu-cmd manual: write the bundle and stop; `goal import` brings its out/ back
RUN_SH = """#!/usr/bin/env bash
# One perfloop phase, self-contained: run it from anywhere with `bash run.sh`; results land in out/.
B="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
cd "$B" || exit 1
rm -rf out && mkdir -p out
# Spec commands say `python`: let it be the interpreter that runs the harness.
[ -n "${{PERFLOOP_PYTHON:-}}" ] && export PATH="$(dirname "$PERFLOOP_PYTHON"):$PATH"
env -u PYTHONHOME PYTHONPATH="$B/freeze/harness" PYTHONSAFEPATH=1 PYTHONDONTWRITEBYTECODE=1 {env} \\
  "${{PERFLOOP_PYTHON:-python3}}" -m perfloop.loop.remote "$B" > out/child.log 2>&1
code=$?
tar -czf "$B/out.tgz" -C "$B/out" . 2>/dev/null
exit $code
"""


class JobPending(Exception):
    """`--gpu-cmd manual`: a bundle waits to be run by hand and its out/ imported.

    Not a RuntimeError: the loop does not count it as a failed attempt; it stops and waits."""


class BundleManifest(Record):
    """`bundle.json`: what one job bundle holds, each file hashed, and one hash over them all."""

    kind: str = Field(description="ab, profile, trial or shell.")
    label: str
    sha256: str
    files: dict[str, str]


class JobResult(Record):
    """`out/result.json`: the job's exit code and output, and the hash of every other file it left in out/."""

    bundle_sha256: str
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    error: str | None = Field(None, description="Why the job could not run its phase at all.")
    files: dict[str, str]


class RemoteJob(Record):
    """What the loop records next to a phase run as a batch job: the runner, the bundle, what came back."""

    runner: str = Field(description="The --gpu-cmd template.")
    command: str = Field(description="The command run, placeholders filled.")
    bundle_sha256: str
    bundle_files: int
    runner_exit: int | None = Field(description="None when the out/ was imported (`goal import`).")
    exit_code: int
    wall_s: float
    files: dict[str, str] = Field(description="Files brought back (out/ paths) and their hashes.")


def _to_bundle(text: str, root: Path) -> str:
    """Every run-folder path in `text` written relative to the bundle."""
    return re.sub(re.escape(str(root)) + r"(?=[/\"'\s]|$)", TOKEN, text)


def _shell_word(value: str, root: Path) -> str:
    """`value` as one shell word for run.sh, run-folder paths made bundle paths: `"$B"` stays outside
    the quotes around the rest, or the shell would not expand it (an engine tree's path, say)."""
    pieces = _to_bundle(value, root).split(TOKEN)
    return '"$B"'.join(shlex.quote(p) if p else "" for p in pieces) or "''"


def _from_bundle(text: str, bundle: str) -> str:
    return text.replace(TOKEN, json.dumps(bundle)[1:-1])


def _copy_tree(src: Path, dest: Path) -> None:
    """A worktree's tracked files (its checkout, not build output or artifacts)."""
    listed = subprocess.run(["git", "-C", str(src), "ls-files", "-z"], capture_output=True, text=True)
    names = [n for n in listed.stdout.split("\0") if n] if listed.returncode == 0 else None
    if names is None:
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".git", "__pycache__"), symlinks=True)
        return
    for name in names:
        if (src / name).is_file() or (src / name).is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dest / name, follow_symlinks=False)


def _hash_files(folder: Path, skip: frozenset[str] = frozenset()) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).as_posix() not in skip
    }


def _bundle_files(bundle: Path) -> dict[str, str]:
    """The bundle's own files and their hashes (not what a run of it added: out/, the resolved job)."""
    ran = re.compile(r"^(out(/|\.tgz$|\.failed-)|bundle\.json$|job\.resolved\.json$)")
    return {k: v for k, v in _hash_files(bundle).items() if not ran.match(k)}


def write_bundle(
    kind: str,
    job: dict[str, Any],
    root: Path,
    trees: list[Path],
    inputs: list[Path],
    env: dict[str, str],
) -> tuple[Path, BundleManifest]:
    """Write one job's bundle under RUN/work/jobs/<hash> and return its folder and manifest."""
    stage = root / JOBS / f"tmp-{os.getpid()}-{time.monotonic_ns()}"
    stage.mkdir(parents=True)
    shutil.copytree(root / harness.HARNESS_DIR, stage / harness.HARNESS_DIR)
    shutil.copy2(root / harness.MANIFEST, stage / harness.MANIFEST)
    for tree in dict.fromkeys(trees):
        _copy_tree(tree, stage / tree.relative_to(root))
    for path in inputs:
        (stage / path.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, stage / path.relative_to(root))
    (stage / "job.json").write_text(_to_bundle(json.dumps({"kind": kind, **job}, indent=2), root))
    exports = " ".join(f"{k}={_shell_word(v, root)}" for k, v in sorted(env.items()))
    (stage / "run.sh").write_text(RUN_SH.format(env=exports))
    files = _bundle_files(stage)
    manifest = BundleManifest(
        kind=kind, label=str(job.get("label", kind)), sha256=harness.tree_sha256(files), files=files
    )
    atomic_write_model(stage / "bundle.json", manifest)
    final = root / JOBS / manifest.sha256[:20]
    if (final / "out" / "result.json").exists():
        # The same job again (a resume after the job came back): take what came back.
        shutil.rmtree(stage, onerror=harness._force)
    else:
        if final.exists():  # a job that never came back, or was changed: written afresh
            shutil.rmtree(final, onerror=harness._force)
        stage.rename(final)
    return final, manifest


def archive(bundle: Path) -> Path:
    """`bundle.tgz` beside the folder, for runners that carry one file."""
    path = bundle.with_suffix(".tgz")
    with tarfile.open(path, "w:gz") as tar:
        tar.add(
            bundle, arcname="bundle", filter=lambda info: None if info.name.startswith("bundle/out") else info
        )
    return path


def import_command(root: Path) -> str:
    """The command that hands a `manual` job's out/ archive back to the run at `root`."""
    return f"perfloop goal import {root} bundle/out.tgz"


def job_instruction(archive_path: Path, root: Path) -> str:
    """What to do with a pending `manual` job: run it on the GPU machine, then import what came back."""
    return (
        f"run the job bundle {archive_path} on the GPU machine (`bash bundle/run.sh`), "
        f"then `{import_command(root)}`"
    )


def import_out(root: Path, archive_path: Path) -> Path:
    """`goal import`: unpack a job's out/ archive into the bundle folder it names; returns that folder."""
    with tarfile.open(archive_path) as tar:
        names = [n for n in tar.getnames() if n in ("result.json", "./result.json")]
        member = tar.extractfile(names[0]) if names else None
        if member is None:
            raise MeasureError(f"{archive_path}: no result.json; not the out/ of a perfloop job")
        result = JobResult.model_validate_json(member.read())
        bundle = root / JOBS / result.bundle_sha256[:20]
        if not (bundle / "bundle.json").exists():
            raise MeasureError(
                f"{archive_path}: its bundle {result.bundle_sha256[:20]} is not one of this run's"
            )
        out = bundle / "out"
        shutil.rmtree(out, ignore_errors=True)
        tar.extractall(out, filter="data")
    return bundle


class RemoteBackend(ProcessBackend):
    """A ProcessBackend whose children run as batch jobs through the `gpu_cmd` runner template."""

    def __init__(self, gpu_cmd: str) -> None:
        self.gpu_cmd = gpu_cmd

    def _child(
        self, kind: str, job: dict[str, Any], out_dir: Path, cwd: Path | None, engine_tree: Path | None = None
    ) -> dict[str, Any]:
        root = harness.harness_of(out_dir.resolve())
        if root is None:
            raise MeasureError(
                f"{out_dir}: not inside a run folder with a frozen harness; no bundle to write"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        trees = [t.resolve() for t in (cwd, engine_tree) if t is not None]
        job = job | {"run_root": TOKEN, "cwd": str(cwd.resolve()) if cwd else None}
        env = harness.threads_env(_threads(job))
        if harness.has_engine(engine_tree):
            env[harness.ENGINE_TREE_ENV] = str(engine_tree.resolve())  # type: ignore[union-attr]
        for key in ("a_tree", "b_tree"):
            if job.get(key):
                trees.append(Path(job[key]).resolve())
        bundle, manifest = write_bundle(kind, job, root.resolve(), trees, [], env)
        result, remote = self._run(bundle, manifest, out_dir.resolve(), root.resolve())
        if result.exit_code != 0 or not (bundle / "out" / "record.json").exists():
            log = bundle / "out" / "child.log"
            tail = redact("".join(log.read_text().splitlines(True)[-15:])) if log.exists() else ""
            _discard(bundle)
            error = IntegrityError if INTEGRITY in tail else MeasureError
            raise error(f"{kind} batch job {manifest.sha256[:12]} failed (exit {remote.exit_code}):\n{tail}")
        text = (bundle / "out" / "record.json").read_text().replace(TOKEN + "/out/run", TOKEN)
        return json.loads(_from_bundle(text, str(root.resolve())))

    def _run(
        self, bundle: Path, manifest: BundleManifest, log_dir: Path, root: Path
    ) -> tuple[JobResult, RemoteJob]:
        """Run (or take the imported out/ of) a bundle, check what came back, copy it into the run folder."""
        out = bundle / "out"
        command, runner_exit, start = "", None, time.monotonic()
        if not (out / "result.json").exists():
            if self.gpu_cmd == MANUAL:
                tgz = archive(bundle)
                raise JobPending(f"{manifest.label}: {job_instruction(tgz, root)}")
            command = self._command(bundle, out)
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            env = {k: v for k, v in os.environ.items() if k not in HIDDEN_ENV}
            proc = subprocess.run(command, shell=True, capture_output=True, text=True, env=env)
            runner_exit = proc.returncode
            (log_dir / "runner.log").write_text(
                redact(f"$ {command}\n[exit {proc.returncode}]\n{proc.stdout}{proc.stderr}")
            )
        try:
            result = _check_out(out, manifest, command or "(imported)")
            if result.error:
                raise MeasureError(f"{manifest.label}: batch job {manifest.sha256[:12]}: {result.error}")
        except MeasureError:
            _discard(bundle)
            raise
        for path in sorted((out / "run").rglob("*")) if (out / "run").exists() else []:
            if path.is_file():
                dest = root / path.relative_to(out / "run")
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
        if (out / "child.log").exists():
            shutil.copy2(out / "child.log", log_dir / "child.log")
        remote = RemoteJob(
            runner=self.gpu_cmd,
            command=command or "(imported with `perfloop goal import`)",
            bundle_sha256=manifest.sha256,
            bundle_files=len(manifest.files),
            runner_exit=runner_exit,
            exit_code=result.exit_code,
            wall_s=round(time.monotonic() - start, 3),
            files=result.files,
        )
        atomic_write_model(log_dir / "remote.json", remote)
        return result, remote

    def _command(self, bundle: Path, out: Path) -> str:
        cmd = self.gpu_cmd.replace("{bundle}", shlex.quote(str(bundle))).replace(
            "{out}", shlex.quote(str(out))
        )
        if "{archive}" in cmd:
            cmd = cmd.replace("{archive}", shlex.quote(str(archive(bundle))))
        return cmd

    def shell(
        self, command: str, tree: Path, root: Path, writes: Path | None, env: dict[str, str]
    ) -> tuple[int, str, str]:
        """A correctness/reference command as a batch job; `writes` (a run-folder file) comes back."""
        tree, root = tree.resolve(), root.resolve()
        inputs = [
            p for p in (root / "freeze" / "reference.json", root / "freeze" / "workload.json") if p.exists()
        ]
        writes = writes.resolve() if writes else None
        inputs = [p for p in inputs if p != writes]
        job = {
            "label": "shell",
            "command": command,
            "cwd": str(tree),
            "writes": str(writes) if writes else None,
        }
        bundle, manifest = write_bundle(
            "shell", job, root, [tree], inputs, harness.threads_env(env_threads(env))
        )
        log_dir = root / JOBS / f"{manifest.sha256[:20]}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        result, remote = self._run(bundle, manifest, log_dir, root)
        # The correctness log is what the ledger records of this phase: it names the job and the runner.
        note = f"\n[batch job: bundle sha256 {manifest.sha256}, runner: {remote.command}]\n"
        return result.exit_code, result.stdout, result.stderr + note


def _discard(bundle: Path) -> None:
    """Set a failed job's out/ aside (kept for diagnosis) so a resume runs the job again."""
    out = bundle / "out"
    if out.exists():
        out.rename(bundle / f"out.failed-{time.time_ns()}")


def env_threads(env: dict[str, str]) -> int | None:
    """The torch thread count an evidence environment sets, if any."""
    return int(env["OMP_NUM_THREADS"]) if env.get("OMP_NUM_THREADS") else None


def _check_out(out: Path, manifest: BundleManifest, command: str) -> JobResult:
    """The job's result, after checking out/ holds exactly the files it says it wrote, unchanged."""
    path = out / "result.json"
    if not path.exists():
        raise MeasureError(
            f"{manifest.label}: the batch job brought nothing back (no out/result.json); ran: {command}"
        )
    result = JobResult.model_validate_json(path.read_text())
    if result.bundle_sha256 != manifest.sha256:
        raise MeasureError(
            f"{manifest.label}: out/ is job {result.bundle_sha256[:12]}'s, not {manifest.sha256[:12]}'s"
        )
    found = _hash_files(out, UNHASHED)
    if found != result.files:
        bad = sorted(k for k in found.keys() | result.files.keys() if found.get(k) != result.files.get(k))
        raise MeasureError(f"{manifest.label}: out/ does not match what the job says it wrote: {bad[:10]}")
    return result


# ---------- the GPU side: `python -m perfloop.loop.remote BUNDLE` (run.sh) ----------


def _run_job(bundle: Path) -> int:
    from perfloop.loop import process_backend

    manifest = BundleManifest.model_validate_json((bundle / "bundle.json").read_text())
    found = _bundle_files(bundle)
    # Checked before anything runs: a bundle altered on the way is not the job the loop wrote. A tree
    # may have gained build output from an earlier run in this folder; the harness may gain nothing.
    changed = [k for k, v in manifest.files.items() if found.get(k) != v]
    changed += [k for k in found.keys() - manifest.files.keys() if k.startswith(harness.HARNESS_DIR)]
    if changed:
        return _finish(
            bundle, manifest, 2, "", "", f"bundle changed since it was written: {sorted(changed)[:10]}"
        )
    job = json.loads(_from_bundle((bundle / "job.json").read_text(), str(bundle)))
    out = bundle / "out"
    if job["kind"] == "shell":
        code, stdout, stderr = _run_shell(job, bundle, out)
    else:
        # What the loop expects under the run folder is written to out/run/, which it copies back.
        job["out_dir"] = str(out / "run" / Path(job["out_dir"]).relative_to(bundle))
        job_path = bundle / "job.resolved.json"
        job_path.write_text(json.dumps(job, indent=2))
        if job.get("cwd"):
            os.chdir(job["cwd"])
        try:
            code = process_backend.main([job["kind"], str(job_path), str(out / "record.json")])
        except Exception:  # noqa: BLE001 - any failure is the job's result, reported in out/
            traceback.print_exc()
            code = 1
        stdout = stderr = ""
        record = out / "record.json"
        if record.exists():
            record.write_text(_to_bundle(record.read_text(), bundle))
    return _finish(bundle, manifest, code, stdout, stderr)


def _finish(
    bundle: Path, manifest: BundleManifest, code: int, stdout: str, stderr: str, error: str | None = None
) -> int:
    """Write out/result.json: the exit code and the hash of every file the job left in out/."""
    out = bundle / "out"
    files = _hash_files(out, UNHASHED)
    result = JobResult(
        bundle_sha256=manifest.sha256, exit_code=code, stdout=stdout, stderr=stderr, error=error, files=files
    )
    atomic_write_model(out / "result.json", result)
    return code


def _run_shell(job: dict[str, Any], bundle: Path, out: Path) -> tuple[int, str, str]:
    command = job["command"]
    writes = Path(job["writes"]) if job.get("writes") else None
    proc = subprocess.run(command, shell=True, cwd=job["cwd"], capture_output=True, text=True)
    print(f"$ {command}\n[exit {proc.returncode}]\n{proc.stdout}{proc.stderr}", flush=True)
    if writes is not None and writes.exists():
        dest = out / "run" / writes.relative_to(bundle)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(writes, dest)
    return proc.returncode, proc.stdout, proc.stderr


if __name__ == "__main__":
    sys.exit(_run_job(Path(sys.argv[1]).resolve()))
