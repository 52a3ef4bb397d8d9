"""Option-chain data: loading, cleaning, European conversion, buckets, realized paths.

Pipeline (METHODS §5): :func:`load_chain` -> :func:`clean` (§5.1) -> :func:`to_european`
(§5.2; the shared files already hold its result) -> :func:`assign_buckets` /
:func:`static_slices` (§5.3) and :func:`build_episodes` (§5.6). :func:`load_period` loads
and cleans one shared asset-period. Every step that drops rows returns a :class:`DropReport`.
"""
from jaxhedge.data.buckets import (BUCKET_CENTRES, GROUPS, assign_buckets, bucket_of,
                                   group_masks, static_slices)
from jaxhedge.data.clean import clean
from jaxhedge.data.episodes import EpisodeBatch, build_episodes, episodes_from_arrays
from jaxhedge.data.european import convert_calls, estimate_alpha, to_european
from jaxhedge.data.loader import (ASSETS, PERIODS, PeriodData, load_chain, load_eod_rates,
                                  load_period)
from jaxhedge.data.report import DropReport
from jaxhedge.data.slices import SliceBatch, pad_slices

__all__ = ["SliceBatch", "pad_slices", "DropReport", "load_chain", "load_period", "PeriodData",
           "load_eod_rates", "ASSETS", "PERIODS", "clean", "to_european", "convert_calls", "estimate_alpha",
           "BUCKET_CENTRES", "GROUPS", "bucket_of", "assign_buckets", "group_masks",
           "static_slices", "EpisodeBatch", "build_episodes", "episodes_from_arrays"]
