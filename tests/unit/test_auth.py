"""Role rules: the users file, token hashes, held roles bounded by the roles a user may hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api.auth import Directory, RoleRefused, hash_token, load_users, parse_users, write_demo_users


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
