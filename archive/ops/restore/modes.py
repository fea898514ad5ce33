"""The file and directory modes influxd 1.6.7 itself uses (docs/formats.md), given to everything
a restore creates: meta dir 0755, ``meta.db`` 0644, ``data/<db>`` and ``data/<db>/<rp>`` 0700,
shard dirs 0755, files 0644, WAL dirs 0700."""

from __future__ import annotations

DIR_MODE_DB = 0o700  # data/<db>, data/<db>/<rp>
DIR_MODE_SHARD = 0o755
DIR_MODE_WAL = 0o700
DIR_MODE_META = 0o755
FILE_MODE = 0o644
