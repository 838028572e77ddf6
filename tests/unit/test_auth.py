"""Role rules: the users file, token hashes, held roles bounded by the roles a user may hold."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from api.auth import Directory, LastAdmin, RoleRefused, hash_token, load_users, parse_users, write_demo_users
from api.users_file import watch_users


def doc(**user: object) -> dict[str, object]:
    return {"users": [{"name": "olga", "roles": ["viewer", "operator"], "token_sha256": hash_token("t"), **user}]}


def test_a_token_maps_to_its_user_and_the_held_role() -> None:
    directory = Directory(parse_users(doc(role="operator")))
    principal = directory.authenticate("t")
    assert principal is not None and (principal.name, principal.role) == ("olga", "operator")
    assert directory.authenticate("T") is None and directory.authenticate("") is None


def test_the_first_listed_role_is_held_by_default() -> None:
    assert Directory(parse_users(doc())).role_of("olga") == "viewer"


def test_assignment_within_the_list_only() -> None:
    directory = Directory(parse_users(doc()))
    directory.assign("olga", "operator")
    assert directory.role_of("olga") == "operator"
    with pytest.raises(RoleRefused, match=r"may not hold role 'admin'; the users file allows \['viewer', 'operator'\]"):
        directory.assign("olga", "admin")
    with pytest.raises(KeyError):
        directory.assign("nobody", "viewer")


def test_a_stored_assignment_the_file_no_longer_allows_is_ignored() -> None:
    directory = Directory(parse_users(doc()), held={"olga": "admin", "ghost": "admin"})
    assert directory.role_of("olga") == "viewer"


@pytest.mark.parametrize(("user", "words"), [
    ({"roles": ["root"]}, "unknown roles ['root']"),
    ({"roles": []}, "needs a name and roles"),
    ({"role": "admin"}, "role 'admin' is not among the roles it may hold"),
    ({"token_sha256": "secret"}, "token_sha256 must be 64 hex digits"),
])
def test_bad_users_files_say_what_is_wrong(user: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_users(doc(**user))


def test_json_and_toml_files(tmp_path: Path) -> None:
    (tmp_path / "u.json").write_text(json.dumps(doc()))
    toml = f'[[users]]\nname = "olga"\nroles = ["viewer"]\ntoken_sha256 = "{hash_token("t")}"\n'
    (tmp_path / "u.toml").write_text(toml)
    assert set(load_users(str(tmp_path / "u.json"))) == set(load_users(str(tmp_path / "u.toml"))) == {"olga"}
    assert load_users("") == {}


def test_demo_users_store_only_the_hash(tmp_path: Path) -> None:
    token = write_demo_users(tmp_path / "users.json")
    text = (tmp_path / "users.json").read_text()
    assert token not in text and hash_token(token) in text
    principal = Directory(load_users(str(tmp_path / "users.json"))).authenticate(token)
    assert principal is not None and principal.role == "admin"


def admins_doc() -> dict[str, object]:
    return {"users": [{"name": n, "roles": ["viewer", "operator", "admin"], "role": r, "token_sha256": hash_token(n)}
                      for n, r in (("ada", "admin"), ("bob", "operator"))]}


def test_the_last_admin_cannot_be_demoted() -> None:
    directory = Directory(parse_users(admins_doc()))
    with pytest.raises(LastAdmin, match="user 'ada' is the last admin"):
        directory.assign("ada", "operator")
    assert directory.role_of("ada") == "admin"
    assert directory.assign("bob", "admin") == "operator"  # a second admin first ...
    assert directory.assign("ada", "viewer") == "admin"  # ... then ada may step down
    with pytest.raises(LastAdmin):
        directory.assign("bob", "viewer")


def test_a_changed_users_file_is_reloaded_keeping_assigned_roles(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text(json.dumps(admins_doc()))
    state = SimpleNamespace(directory=Directory(load_users(str(path))))
    state.directory.assign("bob", "admin")

    async def scenario() -> None:
        watcher = asyncio.create_task(watch_users(state, str(path), every_s=0.02))
        await asyncio.sleep(0.05)  # the watcher has read the file's signature
        doc = admins_doc()
        doc["users"].append({"name": "cy", "roles": ["viewer"], "token_sha256": hash_token("cy")})  # type: ignore[union-attr]
        path.write_text(json.dumps(doc))
        await _until(lambda: "cy" in state.directory.users)
        assert state.directory.role_of("bob") == "admin", "an assignment made through the API carries over"
        path.write_text("{not json")  # a broken file is refused; the users loaded before stay
        before = state.directory
        await asyncio.sleep(0.2)
        assert state.directory is before
        path.write_text(json.dumps({"users": admins_doc()["users"][:1]}))  # type: ignore[index]
        await _until(lambda: "bob" not in state.directory.users)
        assert state.directory.authenticate("bob") is None, "a removed user is refused at once"
        watcher.cancel()

    asyncio.run(scenario())


async def _until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)
