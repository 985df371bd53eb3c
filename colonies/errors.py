"""The one exception tree of Colonies.

    ColoniesError                 base; carries the protocol status (HTTP status and `status` field)
    ├── BadRequest (400)          malformed envelope or payload, validation, illegal state
    │   └── PayloadTooLarge (413) request body over the configured limit
    ├── Forbidden (403)           bad signature, unknown payload type, not a member, not assigned
    ├── NotFound (404)            missing process/executor/attribute, or assign found nothing
    ├── Timeout (408)             assign timed out while the colony was paused
    ├── TooManyRequests (429)     a rate limit was passed (channel appends)
    ├── Unavailable (503)         assign while paused with no timeout
    ├── Internal (500)            a real internal fault
    └── StorageError (500)        the storage backend failed
        └── Conflict (400)        a uniqueness or state constraint was violated
            ├── IdInUse (409)     an id another executor/user/colony already uses
            ├── AlreadyExists (409) a name that must be unique is taken (snapshot)
            └── InUse (409)       still referenced, so it cannot be removed (a definition with blueprints)
    ClientError                   raised by our SDK: the server answered with an error envelope
    ConfigError                   the server's settings cannot be honoured; it refuses to start
    KitError                      the executor kit's own errors, never sent over the wire
    ├── Cancelled                 the running process was stopped (deadline, cancel, taken back)
    ├── ArgumentError             a process' arguments do not fit its function (also a TypeError)
    └── StateError                an executor's state directory cannot be used
    FsError                       ColonyFS: an object store failed (client side, never sent over the wire)
    ├── ObjectNotFound            the object store holds no object under that key
    └── ChecksumError             downloaded bytes do not match the file's recorded SHA-256 (copy not kept)

The mapping from an error to its HTTP status lives here, as `status` on each class.
"""

from __future__ import annotations


class ColoniesError(Exception):
    """Base of every error the server reports to a caller."""

    status: int = 500

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message or self.__class__.__doc__ or self.__class__.__name__


class BadRequest(ColoniesError):
    """The request is malformed, fails validation or asks for an illegal transition."""

    status = 400


class PayloadTooLarge(BadRequest):
    """The request body is larger than the server accepts."""

    status = 413


class Forbidden(ColoniesError):
    """The signer may not do this, or the signature is invalid."""

    status = 403


class NotFound(ColoniesError):
    """The thing asked for does not exist."""

    status = 404


class Timeout(ColoniesError):
    """The wait ended before anything could be done."""

    status = 408


class TooManyRequests(ColoniesError):
    """The caller sent more than a rate limit allows; retry later."""

    status = 429


class Unavailable(ColoniesError):
    """The service cannot do this now."""

    status = 503


class Internal(ColoniesError):
    """An unexpected internal fault."""

    status = 500


class StorageError(ColoniesError):
    """The storage backend failed."""

    status = 500


class Conflict(StorageError):
    """A uniqueness or state constraint was violated."""

    status = 400


class IdInUse(Conflict):
    """An identity (executor, user, colony or server id) that another principal already uses."""

    status = 409


class AlreadyExists(Conflict):
    """A name that must be unique is taken (a snapshot name in its colony)."""

    status = 409


class InUse(Conflict):
    """Still referenced, so it cannot be removed (a blueprint definition with blueprints of its kind)."""

    status = 409


class ClientError(Exception):
    """The server answered a client call with an error envelope; `status` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class TransportError(ClientError):
    """A client call got no reply: the connection was refused, reset or timed out (status 0).
    The call may or may not have reached the server."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


class ConfigError(Exception):
    """A server setting is missing or unusable (e.g. TLS on without a certificate): it refuses to start."""


class KitError(Exception):
    """Base of the executor kit's own errors; they stay in the executor's process."""


class Cancelled(KitError):
    """Raised by `Context.raise_if_cancelled()` once the process was stopped."""


class ArgumentError(KitError, TypeError):
    """A process' arguments do not fit its function: the process fails with the message."""


class ProcessFailed(KitError):
    """Raised by a function to fail its process with these lines as its errors: no traceback, no retry."""

    def __init__(self, *errors: str) -> None:
        super().__init__(errors[0] if errors else "failed")
        self.errors = [e for e in errors if e] or ["failed"]


class StateError(KitError):
    """The executor's state directory cannot be used (locked by another run, unreadable); the CLI prints it."""


class FsError(Exception):
    """ColonyFS on the client side: an object store or a transfer failed."""


class ObjectNotFound(FsError):
    """The object store holds no object under that key."""


class ChecksumError(FsError):
    """The bytes downloaded do not match the file's recorded SHA-256; the corrupt copy was not kept."""


def status_of(exc: BaseException) -> int:
    """HTTP status for any exception: protocol errors carry theirs, anything else is a 500."""
    return exc.status if isinstance(exc, ColoniesError) else 500
