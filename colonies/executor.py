"""The executor kit's public names (the code lives in colonies/executors/)."""

from __future__ import annotations

from colonies.errors import ArgumentError, Cancelled, ProcessFailed
from colonies.executors.capture import install_capture
from colonies.executors.context import Context
from colonies.executors.kit import Executor
from colonies.executors.loader import load_executor
from colonies.executors.retry import RetryPolicy
from colonies.executors.running import REPORT_RETRY_S

__all__ = ["REPORT_RETRY_S", "ArgumentError", "Cancelled", "Context", "Executor", "ProcessFailed", "RetryPolicy",
           "install_capture", "load_executor"]
