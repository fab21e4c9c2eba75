"""ARM (and x86-64) CPUs through Apache TVM: integer Relax compiled to a shared library."""

from .backend import TvmBackend

__all__ = ["TvmBackend"]
