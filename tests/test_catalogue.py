"""Every RPC payload type of the original (protocol.md §2.1, 99 of them) is served: each has a message
struct and a handler here (or is answered before dispatch: versionmsg, getserverinfomsg), except the
three node messages, which the original has no handler for either (403 "invalid payloadtype", kept).

CATALOGUE is §2.1's list, frozen here; when the spec sits beside the repository (../shared/spec, as in
CI and on the project's machines) it is read back and must still say the same.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from colonies.client.core import Call
from colonies.errors import ClientError
from colonies.protocol.messages import REGISTRY
from colonies.server.dispatch import HANDLERS
from tests.conftest import ColonyKeys, ServerProc

SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "protocol.md"
BEFORE_DISPATCH = {"versionmsg", "getserverinfomsg"}  # answered without a signature check (§1.2)
UNHANDLED_UPSTREAM = {"getnodemsg", "getnodesmsg", "getnodesbylocationmsg"}
OUR_EXTENSIONS = {"getprocesseventsmsg"}  # the audit trail
REPLY_ONLY = {"pausestatusreplymsg"}  # a reply's payloadtype, never a request's
_LISTED = """
addattributemsg addblueprintdefinitionmsg addblueprintmsg addchildmsg addcolonymsg addcronmsg addexecutorlogmsg
addexecutormsg addfilemsg addfunctionmsg addgeneratormsg addlocationmsg addlogmsg addusermsg approveexecutormsg
assignprocessmsg cancelprocessgraphmsg cancelprocessmsg changecolonyidmsg changeexecutoridmsg changeserveridmsg
changeuseridmsg channelappendmsg channelreadmsg closefailedmsg closesuccessfulmsg createsnapshotmsg getattributemsg
getblueprintdefinitionmsg getblueprintdefinitionsmsg getblueprinthistorymsg getblueprintmsg getblueprintsmsg
getclustermsg getcoloniesmsg getcolonymsg getcolonystatsmsg getcronmsg getcronsmsg getexecutorbyidmsg
getexecutormsg getexecutorsmsg getfilelabelsmsg getfilemsg getfilesmsg getfunctionsmsg getgeneratormsg
getgeneratorsmsg getlocationmsg getlocationsmsg getlogsmsg getnodemsg getnodesbylocationmsg getnodesmsg
getpausestatusmsg getprocessesmsg getprocessgraphmsg getprocessgraphsmsg getprocesshistmsg getprocessmsg
getserverinfomsg getsnapshotmsg getsnapshotsmsg getstatisticsmsg getuserbyidmsg getusermsg getusersmsg
packgeneratormsg pauseassignmentsmsg reconcileblueprintmsg rejectexecutormsg removeallprocessesmsg
removeallprocessgraphsmsg removeallsnapshotmsg removeblueprintdefinitionmsg removeblueprintmsg removecolonymsg
removecronmsg removeexecutormsg removefilemsg removefunctionmsg removegeneratormsg removelocationmsg
removeprocessgraphmsg removeprocessmsg removesnapshotmsg removeusermsg reportallocationmsg resolvegeneratormsg
resumeassignmentsmsg runcronmsg searchlogsmsg setoutputmsg submitfuncspecmsg submitworkflowspecmsg
updateblueprintmsg updateblueprintstatusmsg updateexecutormsg versionmsg
"""
CATALOGUE = frozenset(_LISTED.split())


def test_the_catalogue_has_99_types() -> None:
    assert len(CATALOGUE) == 99


def test_the_spec_still_lists_them() -> None:
    if not SPEC.exists():
        pytest.skip(f"{SPEC} is not beside the repository")
    text = SPEC.read_text(encoding="utf-8")
    section = text[text.index("### 2.1"):text.index("## 3.")]
    assert set(re.findall(r"\b[a-z]+msg\b", section)) - REPLY_ONLY == CATALOGUE


def test_every_type_is_dispatched() -> None:
    served = set(HANDLERS) | BEFORE_DISPATCH
    assert CATALOGUE - UNHANDLED_UPSTREAM - served == set(), "catalogue types without a handler"
    assert set(HANDLERS) - CATALOGUE == OUR_EXTENSIONS, "handlers for types the original does not have"
    assert served <= set(REGISTRY)


@pytest.mark.parametrize("msgtype", sorted(UNHANDLED_UPSTREAM))
def test_node_messages_are_refused_as_upstream(server: ServerProc, colony: ColonyKeys, msgtype: str) -> None:
    with server.client(colony.user_prvkey) as c, pytest.raises(ClientError) as err:
        c._run(Call({"msgtype": msgtype, "colonyname": colony.name, "nodename": "n"}, Any))
    assert (err.value.status, err.value.message) == (403, f"invalid rpcMsg.PayloadType: {msgtype}")
