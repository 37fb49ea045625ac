"""Who gets in (issue #16): 401 everywhere but health and sign-in, per-user jobs, the user commands, the cookie,
foreign Origin and Host refused. In-process against the real app (TestClient) and the real CLI (CliRunner)."""
import json

import pytest

pytest.importorskip("multipart")
from typer.testing import CliRunner  # noqa: E402

from dreammover_studio.auth import COOKIE, UserStore  # noqa: E402
from dreammover_studio.cli import studio_app  # noqa: E402
from test_studio_kit import AUTH, studio_client, submit, wait  # noqa: E402


def _add(home, name, *extra) -> str:
    res = CliRunner().invoke(studio_app, ["add-user", name, "--home", str(home), *extra])
    assert res.exit_code == 0, res.output
    return res.stdout.strip().splitlines()[0]


@pytest.fixture()
def team(tiny_dm, tmp_path):
    home = tmp_path / "home"
    alice, bob = _add(home, "alice"), _add(home, "bob")
    with studio_client(tiny_dm, home, users=UserStore(home)) as (client, runner):
        yield client, {"alice": {"Authorization": f"Bearer {alice}"}, "bob": {"Authorization": f"Bearer {bob}"}}, home


def test_user_commands_store_only_a_hash_and_revoke_at_once(team):
    client, users, home = team
    token = users["alice"]["Authorization"].split()[1]
    stored = (home / "users.json").read_text()
    assert token not in stored and set(json.loads(stored)["users"]) == {"alice", "bob"}
    assert (home / "users.json").stat().st_mode & 0o077 == 0  # not readable by others
    listed = CliRunner().invoke(studio_app, ["list-users", "--home", str(home)])
    assert listed.exit_code == 0 and "alice\tuser" in listed.output and token not in listed.output
    again = CliRunner().invoke(studio_app, ["add-user", "alice", "--home", str(home)])
    assert again.exit_code != 0 and "exists" in again.output
    assert client.get("/jobs", headers=users["alice"]).status_code == 200
    assert CliRunner().invoke(studio_app, ["revoke-user", "alice", "--home", str(home)]).exit_code == 0
    assert client.get("/jobs", headers=users["alice"]).status_code == 401  # the running server sees it at once
    assert client.get("/jobs", headers=users["bob"]).status_code == 200


def _routes(routes):
    """Every route with a path, including those of included routers (FastAPI wraps them)."""
    for r in routes:
        inner = getattr(r, "original_router", None)
        yield from (_routes(inner.routes) if inner is not None else [r])


def test_401_without_credentials_on_every_route_but_health_and_signin(team):
    client, users, _ = team
    job = submit(client, headers=users["alice"]).json()["id"]
    bare = {"Authorization": ""}
    open_ = {("GET", "/health"): 200, ("GET", "/"): 200, ("GET", "/signin"): 200, ("POST", "/signin"): 401,
             ("POST", "/signout"): 303}
    checked = 0
    for route in _routes(client.app.routes):
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method == "HEAD":
                continue
            path = route.path.replace("{job_id}", job).replace("{which}", "0")
            r = client.request(method, path, headers=bare, follow_redirects=False)
            want = open_.get((method, route.path), 401)
            assert r.status_code == want, (method, path, r.status_code, r.text[:200])
            checked += 1
    assert checked >= 15  # the job API, the docs and openapi, the page, sign-in
    assert "Your access token" in client.get("/", headers=bare).text  # the page is the sign-in form
    assert client.get("/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/jobs", headers=AUTH).status_code == 200  # DREAMMOVER_STUDIO_TOKEN's admin


def test_users_see_only_their_own_jobs_and_admin_sees_all(team):
    client, users, _ = team
    a = submit(client, headers=users["alice"]).json()
    assert a["owner"] == "alice"
    wait(client, a["id"], headers=users["alice"])
    b = submit(client, headers=users["bob"]).json()
    for method, path in (("GET", ""), ("GET", "/events"), ("GET", "/clip"), ("GET", "/frames"),
                         ("GET", "/thumb/0"), ("GET", "/preview"), ("DELETE", ""), ("POST", "/again")):
        r = client.request(method, f"/jobs/{a['id']}{path}", headers=users["bob"])
        assert r.status_code == 404 and "no job" in r.json()["detail"], (method, path, r.status_code)
    assert [j["id"] for j in client.get("/jobs", headers=users["bob"]).json()] == [b["id"]]
    assert [j["id"] for j in client.get("/jobs", headers=users["alice"]).json()] == [a["id"]]
    assert {j["id"] for j in client.get("/jobs", headers=AUTH).json()} == {a["id"], b["id"]}
    assert client.get(f"/jobs/{a['id']}/clip", headers=users["alice"]).status_code == 200
    wait(client, b["id"], headers=users["bob"])


def test_signin_cookie_is_httponly_samesite_and_signout_clears_it(team):
    client, users, _ = team
    token = users["bob"]["Authorization"].split()[1]
    client.headers.pop("Authorization")
    bad = client.post("/signin", data={"token": "nope"})
    assert bad.status_code == 401 and "not valid" in bad.text and COOKIE not in client.cookies
    r = client.post("/signin", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and token.lower() not in client.get("/").text.lower()
    assert client.get("/me").json() == {"name": "bob", "admin": False}  # the cookie alone signs in
    assert 'id="f0"' in client.get("/").text  # the studio page, not the sign-in form
    client.post("/signout", follow_redirects=False)
    client.cookies.clear()  # what the browser does with the expired cookie
    assert client.get("/me").status_code == 401


def test_foreign_origin_and_host_are_refused(team):
    client, users, _ = team
    evil = submit(client, headers={**users["alice"], "Origin": "http://evil.example"})
    assert evil.status_code == 403 and "evil.example" in evil.json()["detail"]
    cross = submit(client, headers={**users["alice"], "Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    assert client.get("/jobs", headers={**users["alice"], "Host": "evil.example"}).status_code == 400
    assert client.get("/health", headers={"Host": "evil.example:8000"}).status_code == 400  # DNS rebinding
    assert client.get("/jobs", headers=users["alice"]).json() == []  # nothing was queued
    same = submit(client, headers={**users["alice"], "Origin": "http://testserver"})
    assert same.status_code == 201, same.text
    wait(client, same.json()["id"], headers=users["alice"])


def test_no_auth_is_refused_off_loopback(tmp_path):
    res = CliRunner().invoke(studio_app, ["--no-auth", "--host", "0.0.0.0", "--home", str(tmp_path), "--model", "x"])
    assert res.exit_code != 0 and "--no-auth is only allowed on a loopback address" in res.output
