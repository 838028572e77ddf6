"""Users and held roles (admin): a user may only be given a role on their list in the users file."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import Field

from api.auth import ROLES, Admin, LastAdmin, RoleRefused
from api.deps import StoreDep, WeightsDep
from api.queries import registry as reg
from api.routes.audit import Change, record
from pipeline.store import StoreError

router = APIRouter(prefix="/v1/users", tags=["users"])


class RoleIn(Change):
    role: Literal["viewer", "operator", "admin"] = Field(description=f"one of {ROLES}")


@router.get("", summary="Users, the roles each may hold and the role each holds (admin)")
def list_users(request: Request, _: Admin) -> list[dict[str, Any]]:
    directory = request.app.state.directory
    return [{"name": u.name, "may_hold": list(u.may_hold), "role": directory.role_of(u.name)}
            for u in directory.users.values()]


@router.put("/{user}/role", summary="Change the role a user holds, within their list (admin)",
            responses={403: {"description": "the role is not on the user's list"},
                       409: {"description": "this would leave no admin"}})
def assign_role(user: Annotated[str, Path(max_length=128)], body: RoleIn, request: Request, who: Admin,
                store: StoreDep, weights: WeightsDep) -> dict[str, Any]:
    directory = request.app.state.directory
    try:
        before = directory.assign(user, body.role)
    except KeyError as err:
        raise HTTPException(404, err.args[0]) from err
    except RoleRefused as err:
        raise HTTPException(403, str(err)) from err
    except LastAdmin as err:
        raise HTTPException(409, str(err)) from err
    try:
        reg.write_held_role(store, user, body.role, who.name)
    except StoreError:
        directory.assign(user, before)  # not stored: not in force either
        raise
    record(store, weights, who, "user.role", "", user, {"role": body.role}, body.why)
    return {"name": user, "role": body.role}
