"""Writing a world to Parquet day by day, so its size is bounded by the disk, not by memory.

Only the customers' state, the streaming pipeline's state and one day of transactions are in memory at a time.
Two layouts:

* ``world/`` (a folder): Hive-partitioned, one file per day, ``world/day=<d>/part-0.parquet``, with a small
  ``_fraudsim_world.json`` manifest (configuration, seed, rows). Read it back with
  ``pl.scan_parquet("world/**/*.parquet", hive_partitioning=True)`` or DuckDB's
  ``read_parquet('world/**/*.parquet', hive_partitioning = true)``.
* ``world.parquet`` (a file): one row group per day.

Either is written next to its final name (``.partial``) and moved into place when complete.

Examples
--------
>>> import tempfile, polars as pl
>>> from simulator.world import World, WorldConfig
>>> folder = Path(tempfile.mkdtemp()) / "world"
>>> stats = write_world(World(WorldConfig(customers=300, merchants=100, days=3, fraudsters=4), seed=1), folder)
>>> sorted(p.name for p in folder.iterdir())
['_fraudsim_world.json', 'day=0', 'day=1', 'day=2']
>>> pl.scan_parquet(str(folder / "**" / "*.parquet"), hive_partitioning=True).select(pl.len()).collect().item() == stats.rows
True
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from ..errors import DataError

MANIFEST = "_fraudsim_world.json"


@dataclass(frozen=True)
class WriteStats:
    rows: int
    fraud: int
    days: int
    seconds: float
    path: Path


def is_single_file(path: Path) -> bool:
    return path.suffix.lower() == ".parquet"


def check_target(path: Path) -> None:
    """Refuse to replace a folder that is not a world fraudsim wrote (it might hold anything)."""
    if path.is_dir() and any(path.iterdir()) and not (path / MANIFEST).is_file():
        raise DataError("the folder exists and is not a world written by fraudsim generate; give a new folder",
                        file=str(path), field="--output")
    if path.exists() and not path.is_dir() and not is_single_file(path):
        raise DataError("exists and is not a folder; give a folder for day partitions, or a .parquet file",
                        file=str(path), field="--output")


def write_world(world, path: str | Path, *, on_day: Callable[[int], None] | None = None,
                compression: str = "zstd") -> WriteStats:
    """Step ``world`` through its remaining days, writing each day as it is made (see the module docstring)."""
    import pyarrow.parquet as pq

    path = Path(path)
    check_target(path)
    partial = path.with_name(path.name + ".partial")
    if partial.is_dir():
        shutil.rmtree(partial)
    else:
        partial.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = fraud = days = 0
    writer = None
    try:
        for frame in world.stream():
            day = int(frame["day"][0]) if frame.height else world.day - 1
            if is_single_file(path):
                table = frame.to_arrow()
                if writer is None:
                    writer = pq.ParquetWriter(str(partial), table.schema, compression=compression)
                writer.write_table(table, row_group_size=max(1, table.num_rows))
            else:
                part = partial / f"day={day}" / "part-0.parquet"
                part.parent.mkdir(parents=True, exist_ok=True)
                frame.write_parquet(part, compression=compression)
            rows += frame.height
            fraud += int(frame["is_fraud"].sum())
            days += 1
            if on_day is not None:
                on_day(frame.height)
        if is_single_file(path):
            if writer is None:  # no day left to simulate: an empty file with the schema
                from .world import SCHEMA
                import polars as pl

                pl.DataFrame(schema=SCHEMA).write_parquet(partial)
            else:
                writer.close()
                writer = None
        else:
            partial.mkdir(parents=True, exist_ok=True)
            manifest = {"config": asdict(world.config), "seed": world.seed, "rows": rows, "fraud": fraud,
                        "days": days, "layout": "hive: day=<d>/part-0.parquet"}
            (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    except BaseException:
        if writer is not None:
            writer.close()
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)
        raise
    if path.is_dir():
        shutil.rmtree(path)
    os.replace(partial, path)
    return WriteStats(rows=rows, fraud=fraud, days=days, seconds=time.perf_counter() - t0, path=path)
