"""People, sessions and the sign-in throttle as services, on each backend and a real Redis."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from app.identity import people
from app.identity.models import Person, Role, Scope
from app.identity.service import (
    Principal,
    create_api_key,
    get_or_create_workspace,
    list_api_keys,
    revoke_workspace_api_key,
)
from app.identity.sessions import SessionStore
from app.identity.throttle import SignInThrottle
from app.kit.db import async_sessions, create_gateway_engine, create_sync_engine, sync_sessionmaker
from app.kit.errors import Conflict, Invalid, NotFound

PASSWORD = "correct horse battery staple"


def _workspace(backend, name: str | None = None) -> uuid.UUID:
    engine = create_sync_engine(backend.settings)
    try:
        with sync_sessionmaker(engine).begin() as session:
            return get_or_create_workspace(session, name or f"people-{uuid.uuid4().hex[:8]}").id
    finally:
        engine.dispose()


def _email() -> str:
    return f"someone-{uuid.uuid4().hex[:10]}@example.com"


def run(backend, use):
    """Runs use(db_sessions, redis) on a fresh event loop, with the gateway's own kind of engine."""

    async def main():
        engine = create_gateway_engine(backend.settings)
        redis = aioredis.Redis.from_url(backend.settings.redis_url)
        try:
            return await use(async_sessions(engine), redis)
        finally:
            await redis.aclose()
            await engine.dispose()

    return asyncio.run(main())


def _store(redis, absolute: int = 3600) -> SessionStore:
    return SessionStore(redis, idle_seconds=600, absolute_seconds=absolute)


def test_a_password_is_stored_as_an_argon2id_hash_and_signs_in_whatever_the_emails_case(backend):
    workspace = _workspace(backend)
    email = _email()

    async def use(sessions, _redis):
        async with sessions() as session:
            created = await people.create_person(session, workspace, email.upper(), Role.EDITOR, PASSWORD)
            assert created.email == email  # stored lower-cased
        async with sessions() as session:
            stored = await session.scalar(select(Person).where(Person.email == email))
            assert stored.password_hash.startswith("$argon2id$") and PASSWORD not in stored.password_hash
            assert stored.last_sign_in_at is None
        async with sessions() as session:
            signed_in = await people.authenticate_person(session, email.title(), PASSWORD)
            assert signed_in is not None and signed_in.id == created.id and signed_in.last_sign_in_at is not None
            assert await people.authenticate_person(session, email, PASSWORD + "!") is None
            assert await people.authenticate_person(session, _email(), PASSWORD) is None
            assert await people.authenticate_person(session, "not an email", PASSWORD) is None
        async with sessions() as session:
            with pytest.raises(Conflict):
                await people.create_person(session, _workspace(backend), email.capitalize(), Role.VIEWER, PASSWORD)
        async with sessions() as session:
            with pytest.raises(Invalid) as short:
                await people.create_person(session, workspace, _email(), Role.VIEWER, "short")
            assert short.value.field == "password"
            with pytest.raises(Invalid) as bad_email:
                await people.create_person(session, workspace, "nobody@", Role.VIEWER, PASSWORD)
            assert bad_email.value.field == "email"

    run(backend, use)


def test_roles_grant_what_the_matching_key_scopes_grant():
    assert [role.scope for role in Role] == [Scope.READ, Scope.WRITE, Scope.ADMIN]
    assert Role.ADMIN.allows(Role.EDITOR) and Role.EDITOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.EDITOR) and not Role.EDITOR.allows(Role.ADMIN)


def test_disabling_a_person_ends_every_session_of_theirs_and_refuses_their_password(backend):
    workspace = _workspace(backend)

    async def use(sessions, redis):
        store = _store(redis)
        async with sessions() as session:
            admin = await people.create_person(session, workspace, _email(), Role.ADMIN, PASSWORD)
            ann = await people.create_person(session, workspace, _email(), Role.EDITOR, PASSWORD)
            ann_email = ann.email
        laptop, _ = await store.start(ann.id, workspace)
        phone, _ = await store.start(ann.id, workspace)
        admins, _ = await store.start(admin.id, workspace)
        async with sessions() as session:
            await people.disable_person(session, store, workspace, ann.id)
        assert await store.lookup(laptop) is None and await store.lookup(phone) is None
        assert await store.lookup(admins) is not None  # only hers
        async with sessions() as session:
            assert await people.authenticate_person(session, ann_email, PASSWORD) is None
            await people.enable_person(session, workspace, ann.id)
        async with sessions() as session:
            assert await people.authenticate_person(session, ann_email, PASSWORD) is not None

    run(backend, use)


def test_a_workspace_keeps_an_admin_and_cannot_touch_another_workspaces_people_or_keys(backend):
    workspace, other = _workspace(backend), _workspace(backend)

    async def use(sessions, redis):
        store = _store(redis)
        async with sessions() as session:
            admin = await people.create_person(session, workspace, _email(), Role.ADMIN, PASSWORD)
            stranger = await people.create_person(session, other, _email(), Role.VIEWER, PASSWORD)
        async with sessions() as session:
            with pytest.raises(Conflict):
                await people.change_role(session, workspace, admin.id, Role.EDITOR)
            with pytest.raises(Conflict):
                await people.disable_person(session, store, workspace, admin.id)
        async with sessions() as session:
            with pytest.raises(NotFound):
                await people.change_role(session, workspace, stranger.id, Role.ADMIN)
            with pytest.raises(NotFound):
                await people.disable_person(session, store, workspace, stranger.id)
            assert [p.id for p in await people.list_people(session, workspace)] == [admin.id]
        async with sessions() as session:
            others_key = await create_api_key(Principal(other, None, Scope.ADMIN), session, Scope.READ, "theirs")
            with pytest.raises(Invalid):
                await create_api_key(Principal(workspace, None, Scope.ADMIN), session, Scope.OPERATOR, None)
        async with sessions() as session:
            (key,) = [k for k in await list_api_keys(session, other) if k.name == "theirs"]
            assert others_key.startswith(f"qrf_{key.prefix}_")
            assert await list_api_keys(session, workspace) == []
            with pytest.raises(NotFound):
                await revoke_workspace_api_key(session, workspace, key.id)
            assert (await revoke_workspace_api_key(session, other, key.id)).revoked_at is not None

    run(backend, use)


def test_a_session_is_kept_by_the_hash_of_its_token_and_ends_at_its_absolute_lifetime(backend):
    person, workspace = uuid.uuid4(), uuid.uuid4()

    async def use(_sessions, redis):
        store = _store(redis, absolute=3600)
        token, started = await store.start(person, workspace)
        found = await store.lookup(token)
        assert found == started and found.csrf_token and found.csrf_token != token
        # Other tests' sessions share this Redis: this one's key is found through its person's set.
        (session_key,) = [key.decode() for key in await redis.smembers(f"qrflow:web-sessions-of:{person}")]
        assert token not in session_key and hashlib.sha256(token.encode()).hexdigest() in session_key
        assert token.encode() not in b"".join((await redis.hgetall(session_key)).values())
        assert 0 < await redis.ttl(session_key) <= 600  # the idle timeout, renewed by each lookup
        assert await store.lookup(token + "x") is None and await store.lookup("") is None
        # Started longer ago than the absolute lifetime: over, however recently used.
        await redis.hset(session_key, "started_at", repr(started.started_at - 3601))
        assert await store.lookup(token) is None
        other, _ = await store.start(person, workspace)
        await store.end(other)
        assert await store.lookup(other) is None

    run(backend, use)


def test_failed_sign_ins_are_throttled_per_email_and_per_client(backend):
    async def use(_sessions, redis):
        throttle = SignInThrottle(redis, per_email=3, per_client=5, window_seconds=600)
        email, client = _email(), f"192.0.2.{uuid.uuid4().int % 250}"
        for _ in range(3):
            assert await throttle.check(email, client) is None
            await throttle.failed(email.upper(), client)  # the same email, whatever its case
        throttled = await throttle.check(email, "198.51.100.7")  # from anywhere
        assert throttled is not None and 0 < throttled.retry_after <= 600
        assert await throttle.check(_email(), "198.51.100.8") is None  # others are not
        for _ in range(2):
            await throttle.failed(_email(), client)
        assert await throttle.check(_email(), client) is not None  # 5 failures from one client
        await throttle.succeeded(email)
        assert await throttle.check(email, "198.51.100.9") is None

    run(backend, use)


def test_a_burst_of_sign_ins_hashes_two_at_a_time(backend, monkeypatch):
    """argon2 is ~0.2 s of a core: a burst queues rather than taking every core and anyio's thread pool."""
    import threading

    from app.identity import passwords

    workspace = _workspace(backend)
    emails = [_email() for _ in range(6)]
    running, most = 0, 0
    lock = threading.Lock()
    real = passwords.verify_password

    def counted(password_hash: str, password: str) -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            return real(password_hash, password)
        finally:
            with lock:
                running -= 1

    async def use(sessions, _redis):
        async with sessions() as session:
            for email in emails:
                await people.create_person(session, workspace, email, Role.VIEWER, PASSWORD)
        monkeypatch.setattr(passwords, "verify_password", counted)

        async def sign_in(email: str):
            async with sessions() as session:
                return await people.authenticate_person(session, email, PASSWORD)

        return await asyncio.gather(*(sign_in(email) for email in emails))

    assert all(person is not None for person in run(backend, use))
    assert most == 2


def test_without_redis_sessions_and_the_throttle_say_so_instead_of_failing():
    """A 503 with a message (SessionsUnavailable, a DomainError), not a 500; a disabled person stays refused
    because every request also reads the person (app/web/auth.py)."""
    from app.identity.sessions import SessionsUnavailable
    from app.kit.redis_server import free_port

    async def main():
        redis = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
        try:
            store = _store(redis)
            throttle = SignInThrottle(redis, per_email=3, per_client=5, window_seconds=600)
            for attempt in (store.start(uuid.uuid4(), uuid.uuid4()), store.lookup("token"), store.end("token"),
                            store.end_all(uuid.uuid4()), throttle.check("a@example.com", "192.0.2.1"),
                            throttle.failed("a@example.com", "192.0.2.1"), throttle.succeeded("a@example.com")):
                with pytest.raises(SessionsUnavailable) as refused:
                    await attempt
                assert refused.value.status == 503
        finally:
            await redis.aclose()

    asyncio.run(main())


def test_changing_ones_password_needs_the_current_one_and_ends_every_session(backend):
    workspace = _workspace(backend)
    email = _email()

    async def use(sessions, redis):
        store = _store(redis)
        async with sessions() as session:
            ann = await people.create_person(session, workspace, email, Role.EDITOR, PASSWORD,
                                             must_change_password=True)
            assert ann.must_change_password
        elsewhere, _ = await store.start(ann.id, workspace)
        new = "a password of her own"
        async with sessions() as session:
            for current, chosen, field in ((PASSWORD + "x", new, "current_password"),
                                           (PASSWORD, "short", "new_password"),
                                           (PASSWORD, PASSWORD, "new_password")):
                with pytest.raises(Invalid) as refused:
                    await people.change_password(session, store, ann.id, current, chosen)
                assert refused.value.field == field
        assert await store.lookup(elsewhere) is not None  # nothing changed yet
        async with sessions() as session:
            await people.change_password(session, store, ann.id, PASSWORD, new)
        assert await store.lookup(elsewhere) is None
        async with sessions() as session:
            assert await people.authenticate_person(session, email, PASSWORD) is None
            signed_in = await people.authenticate_person(session, email, new)
            assert signed_in is not None and not signed_in.must_change_password

    run(backend, use)
