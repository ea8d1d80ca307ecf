"""The reference's resilience decorators under their documented import path.

``from utils import with_timeout, circuit_breaker, retry_with_backoff, try_catch`` works as the
reference shows. The code lives in :mod:`queue_system.resilience`; queue_system itself never
imports the top-level name ``utils``, so an application with its own ``utils`` module can still
import queue_system.
"""

from queue_system import resilience as _resilience
from queue_system.resilience import *  # noqa: F403 (its __all__ is the list, kept there only)

__all__ = _resilience.__all__
