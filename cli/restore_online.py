"""``influx-archive restore SRC --host HOST:PORT``: the online mode of ``restore`` (rendering of
:mod:`influx_archive.archive.ops.restore.online`). Not a command of its own: ``restore_cmd``
dispatches here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from ..archive.errors import escape
from .app import emit_json, report_findings, run_plan, say

HOST_HELP = (
    "Restore ONLINE into the running influxd whose snapshotter (bind-address) is HOST:PORT, e.g. 127.0.0.1:8088. "
    "That port has NO AUTHENTICATION: anyone who can reach it can read and rewrite every database; never expose "
    "it beyond the host (or a trusted network). Restore while the server's metadata is quiet: influxd replaces its "
    "whole metastore on each import."
)
HTTP_HELP = (
    "With --host: influxd's HTTP API, for CQs, grants and checks (default http://HOST:8086; credentials from "
    "INFLUX_USERNAME/INFLUX_PASSWORD)."
)


def plan_text(plan) -> str:
    lines = [f"restore {plan.source.kind} backup {plan.source.display_path} online into {plan.host} "
             f"(influxd {plan.server_version or 'version unknown'}, HTTP {plan.http})"]
    for d in plan.databases:
        name = d.source + (f" -> {d.target}" if d.source != d.target else "")
        lines.append(f"  database {name}: {d.status}; metadata {len(d.payload)} bytes, {len(d.shards)} shards")
        for s in d.shards:
            sh = s.shard
            new = f" -> shard {s.new_id}" if s.new_id is not None else ""
            size = f", {s.files} files, {s.bytes} bytes" if s.files else ""
            if s.status == "planned":
                src_files = sh.effective_files()
                wal = f" and {len(sh.wal)} WAL segments" if sh.wal else ""
                size = f" ({len(src_files)} source files, {sum(f.size for f in src_files)} bytes{wal})"
            err = f": {s.error}" if s.error else ""
            lines.append(f"    shard {sh.database}/{sh.retention_policy}/{sh.id}{new}: {s.status}{size}{err}")
        for st in d.statements:
            err = f": {st.error}" if st.error else ""
            lines.append(f"    {st.what}: {st.status}{err}")
    for u in plan.users:
        grants = ", ".join(u["statements"]) or "no grants"
        lines.append(f"  user {u['name']}{' (admin)' if u['admin'] else ''}: not restored; then run: {grants}")
    return "\n".join(escape(ln) for ln in lines)


def restore_online(
    src: Path, *, host: str, http: Optional[str], selection, dry_run: bool, json_out: bool, salvage: bool
) -> None:
    from ..archive.ops.restore.online import USER_GUIDANCE, OnlineRestoreError, execute_online, plan_online
    from ..archive.sources import open_source

    with open_source(src, salvage=salvage) as source:
        plan = plan_online(source, host, http=http, selection=selection)
        try:
            result = run_plan(plan, execute_online, dry_run=dry_run, json_out=json_out, plan_text=plan_text)
        except OnlineRestoreError as exc:
            if json_out:
                emit_json({"error": {"code": exc.code, "exit_code": exc.exit_code, "message": exc.message},
                           "report": exc.report})
            else:
                sys.stdout.write(plan_text(plan) + "\n")
            raise
        except BaseException:  # interrupted (Ctrl-C, SIGTERM): what reached the server is still said
            if any(d.status not in ("planned", "not sent") for d in plan.databases):
                sys.stdout.write(plan_text(plan) + "\n")
                say("warning: interrupted part-way: the server holds what is listed above as imported, restored or "
                    "confirmed (a 'failed' shard may hold part of its data)")
            raise
        if result is None:
            return
        if json_out:
            emit_json({**result.to_dict(), "findings": [f.to_dict() for f in source.findings]})
            return
        report_findings(source.findings)
        sys.stdout.write(plan_text(result) + "\n")
        n = sum(1 for d in result.databases for s in d.shards if s.status == "confirmed")
        sys.stdout.write(f"restored {len(result.databases)} databases online, {n} shards uploaded and confirmed\n")
        if result.users:
            say(f"warning: {USER_GUIDANCE}")
