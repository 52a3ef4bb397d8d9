"""Shared helpers for the sweep tests: tiny toy-agent sweep files."""
from __future__ import annotations

from pathlib import Path

TOY = """
[sweep]
name = "toy"
agent = "toy"
n_seeds = 2
n_steps = 20
chunk = 10
block_size = {block_size}
keep_params = {keep_params}
{extra}
[dynamic]
learning_rate = [0.01, 0.05, 0.1]
{dynamic}
[static]
{static}
"""


def toy_file(tmp: Path, block_size: int = 3, extra: str = "", dynamic: str = "",
             keep_params: bool = False, name: str = "toy.toml",
             static: str = "batch = [16, 32]") -> Path:
    path = Path(tmp) / name
    path.write_text(TOY.format(block_size=block_size, extra=extra, dynamic=dynamic,
                               keep_params=str(keep_params).lower(), static=static))
    return path


def member_view(df, drop=("block",)):
    """The table without columns that legitimately depend on the block layout."""
    return df.drop(columns=[c for c in drop if c in df.columns]).reset_index(drop=True)
