"""Find the Executor a module declares: `colonies executor run module[:object]`."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from colonies.executors.kit import Executor


def load_executor(target: str) -> Executor:
    """The Executor declared in `module`, `module:object` or `path/to/file.py[:object]`.

    Without an object name, the module must hold exactly one Executor instance. An object that is a
    callable (not an Executor) is called with no arguments to make one.
    """
    modname, _, objname = target.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if modname.endswith(".py") or os.sep in modname:
        path = os.path.abspath(modname)
        spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
        if spec is None or spec.loader is None:
            raise ValueError(f"cannot load {modname}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(modname)
    if objname:
        obj = getattr(module, objname, None)
        if obj is None:
            raise ValueError(f"module {modname} has no {objname!r}")
        if not isinstance(obj, Executor) and callable(obj):
            obj = obj()
        if not isinstance(obj, Executor):
            raise ValueError(f"{target} is not a colonies.Executor")
        return obj
    found = [v for v in vars(module).values() if isinstance(v, Executor)]
    if len(found) != 1:
        raise ValueError(
            f"module {modname} declares {len(found)} Executor instances; name one as {modname}:object"
        )
    return found[0]
