"""Names in write routes: strict for what an operator creates, exact for what is already stored.

Before issue 9 was fixed, any bytes a producer sent could become a service or instance name in
storage (`<img src=x onerror=alert(1)>`, 250 characters, control characters). Operators must be
able to drain, unpin and delete such entries, so a route that acts on an existing entry accepts a
name that does not follow the grammar when exactly that name is stored; a route that creates one
(registering an instance) accepts only the grammar. Names a URL path cannot carry (a "/" in a
service) are addressed with the query-parameter forms of the same routes.
"""

from __future__ import annotations

import re
import time
from typing import Annotated

from fastapi import HTTPException
from pydantic import StringConstraints

from api.queries import registry as reg
from pipeline.store import Store
from weights.inputs import normalize_instance

SERVICE_NAME = r"^[A-Za-z0-9_.\-]{1,128}$"
MAX_STORED_NAME = 1024  # longer than any name the event contract ever let through
STORED_LOOKBACK_S = 7 * 86_400  # calls older than the raw retention's default no longer make a name "stored"
# A name in a path segment or, for names a path cannot carry, in the query string: one type for both
# forms of a route (FastAPI reads it from the path when the path names it, else from the query).
StoredName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_STORED_NAME)]


def _since_s() -> int:
    return int(time.time()) - STORED_LOOKBACK_S


def stored_service(store: Store, service: str) -> str:
    """The service name as given, if it follows the grammar or is stored; else a 422 that says which."""
    if re.fullmatch(SERVICE_NAME, service) or reg.name_stored(store, service, since_s=_since_s()):
        return service
    raise HTTPException(422, f"service {service!r}: expected 1-128 letters, digits, '_', '.' or '-', and no stored "
                        "entry has this exact name")


def stored_instance(store: Store, service: str, instance: str) -> str:
    """A normalised host:port, or an exact stored name as it is; else a 422 that says what was expected."""
    try:
        clean: str | None = normalize_instance(instance)
        problem = ""
    except ValueError as err:
        clean, problem = None, str(err)
    if clean == instance or reg.name_stored(store, service, instance, since_s=_since_s()):
        return instance
    if clean is None:
        raise HTTPException(422, f"{problem}; no stored entry of {service!r} has this exact name")
    return clean
