"""The /api dispatch table: payloadtype → (message struct, handler). Explicit and typed."""

from __future__ import annotations

from colonies.protocol import messages as m
from colonies.server import (
    handlers_blueprints,
    handlers_channels,
    handlers_files,
    handlers_locations,
    handlers_schedules,
    handlers_workflows,
)
from colonies.server import handlers_identity as ident
from colonies.server import handlers_processes as proc
from colonies.server.handlers_types import Handler

HANDLERS: dict[str, Handler] = {
    "addcolonymsg": ident.add_colony,
    "removecolonymsg": ident.remove_colony,
    "getcoloniesmsg": ident.get_colonies,
    "getcolonymsg": ident.get_colony,
    "getcolonystatsmsg": ident.get_colony_stats,
    "getstatisticsmsg": ident.get_statistics,
    "getclustermsg": ident.get_cluster,
    "changecolonyidmsg": ident.change_colony_id,
    "changeserveridmsg": ident.change_server_id,
    "addexecutormsg": ident.add_executor,
    "approveexecutormsg": ident.approve_executor,
    "rejectexecutormsg": ident.reject_executor,
    "removeexecutormsg": ident.remove_executor,
    "getexecutorsmsg": ident.get_executors,
    "getexecutormsg": ident.get_executor,
    "getexecutorbyidmsg": ident.get_executor_by_id,
    "reportallocationmsg": ident.report_allocation,
    "updateexecutormsg": ident.update_executor,
    "changeexecutoridmsg": ident.change_executor_id,
    "addusermsg": ident.add_user,
    "getusersmsg": ident.get_users,
    "getusermsg": ident.get_user,
    "getuserbyidmsg": ident.get_user_by_id,
    "removeusermsg": ident.remove_user,
    "changeuseridmsg": ident.change_user_id,
    "submitfuncspecmsg": proc.submit,
    "assignprocessmsg": proc.assign,
    "getprocessmsg": proc.get_process,
    "getprocessesmsg": proc.get_processes,
    "getprocesshistmsg": proc.get_process_hist,
    "closesuccessfulmsg": proc.close_successful,
    "closefailedmsg": proc.close_failed,
    "setoutputmsg": proc.set_output,
    "cancelprocessmsg": proc.cancel,
    "removeprocessmsg": proc.remove,
    "removeallprocessesmsg": proc.remove_all,
    "pauseassignmentsmsg": proc.pause,
    "resumeassignmentsmsg": proc.resume,
    "getpausestatusmsg": proc.pause_status,
    "addattributemsg": proc.add_attribute,
    "getattributemsg": proc.get_attribute,
    "addfunctionmsg": proc.add_function,
    "getfunctionsmsg": proc.get_functions,
    "removefunctionmsg": proc.remove_function,
    "getprocesseventsmsg": proc.get_process_events,
}

HANDLERS.update(handlers_workflows.HANDLERS)
HANDLERS.update(handlers_schedules.HANDLERS)
HANDLERS.update(handlers_channels.HANDLERS)
HANDLERS.update(handlers_files.HANDLERS)
HANDLERS.update(handlers_locations.HANDLERS)
HANDLERS.update(handlers_blueprints.HANDLERS)

# Successful calls of these change who is a member of what: the guard's cache is dropped after them.
MEMBERSHIP_CHANGES = frozenset({
    "addcolonymsg", "removecolonymsg", "addexecutormsg", "approveexecutormsg", "rejectexecutormsg",
    "removeexecutormsg", "changeexecutoridmsg", "addusermsg", "removeusermsg", "changeuseridmsg",
})

# Reply payloadtype when it differs from the request's.
REPLY_TYPE = {"getpausestatusmsg": "pausestatusreplymsg"}

# Every handled type must have a message struct.
assert set(HANDLERS) <= set(m.REGISTRY), set(HANDLERS) - set(m.REGISTRY)
