"""People: accounts that sign in to the dashboard, each in one workspace with a role.

Adding a person is a sync function (`add_person`) so the CLI, `qrflow up` and the pages share it (pages
through AsyncSession.run_sync); everything else is async, for the pages. Password hashing is CPU-bound
and runs in a thread. Another workspace's person is NotFound, as everywhere.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Callable
from typing import TypeVar

import anyio
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.identity import passwords
from app.identity.models import Person, Role
from app.identity.sessions import SessionStore
from app.kit.db import utcnow
from app.kit.errors import Conflict, Invalid, NotFound

T = TypeVar("T")
# Two argon2 computations at a time per process (~0.2 s of a core each): a burst of sign-ins queues here
# instead of taking every core from the redirects and every thread of anyio's shared pool (40).
_HASHING_AT_ONCE = 2
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = weakref.WeakKeyDictionary()


async def _off_loop(work: Callable[..., T], *args: object) -> T:
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = anyio.CapacityLimiter(_HASHING_AT_ONCE)
    return await anyio.to_thread.run_sync(work, *args, limiter=limiter)


def normalise_email(email: str) -> str:
    """The stored form: validated (syntax only: no DNS lookup) and lower-cased."""
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise Invalid(str(exc), field="email") from None


def add_person(
    session: Session, workspace_id: uuid.UUID, email: str, role: Role, password_hash: str, *,
    must_change_password: bool = False,
) -> Person:
    """The one rule for a new person: a valid email no one on the instance has yet. must_change_password
    when someone else chose the password (a one-time password): they choose their own at first sign-in."""
    email = normalise_email(email)
    if session.scalar(select(Person.id).where(Person.email == email)) is not None:
        raise Conflict(f"someone with the email {email} exists already", field="email")
    person = Person(id=uuid.uuid4(), workspace_id=workspace_id, email=email, role=Role(role),
                    password_hash=password_hash, must_change_password=must_change_password)
    session.add(person)
    session.flush()
    return person


def hash_new_password(password: str) -> str:
    try:
        return passwords.hash_password(password)
    except passwords.WeakPassword as exc:
        raise Invalid(str(exc), field="password") from None


async def create_person(
    session: AsyncSession, workspace_id: uuid.UUID, email: str, role: Role, password: str, *,
    must_change_password: bool = False,
) -> Person:
    password_hash = await _off_loop(hash_new_password, password)
    person = await session.run_sync(
        lambda sync: add_person(sync, workspace_id, email, role, password_hash,
                                must_change_password=must_change_password)
    )
    await session.commit()
    return person


async def authenticate_person(session: AsyncSession, email: str, password: str) -> Person | None:
    """The enabled person with this email and password, their last sign-in noted; else None. Unknown
    emails, wrong passwords and disabled people take the same time and give the same answer.

    The read's transaction ends before the hash is checked: the gateway's SQLite engine has one connection,
    which no request may hold for the ~0.2 s argon2 takes."""
    try:
        email = normalise_email(email)
    except Invalid:
        email = ""
    found = (await session.execute(select(Person.id, Person.password_hash).where(Person.email == email))).first()
    await session.rollback()
    if found is None:
        await _off_loop(passwords.spend_verification_time, password)
        return None
    person_id, password_hash = found
    if not await _off_loop(passwords.verify_password, password_hash, password):
        return None
    rehashed = await _off_loop(passwords.hash_password, password) if passwords.needs_rehash(password_hash) else None
    person = await session.get(Person, person_id, populate_existing=True)
    if person is None or person.disabled_at is not None:
        await session.rollback()
        return None
    if rehashed is not None:
        person.password_hash = rehashed
    person.last_sign_in_at = utcnow()
    await session.commit()
    return person


async def change_password(
    session: AsyncSession, sessions: SessionStore, person_id: uuid.UUID, current: str, new: str
) -> None:
    """Their own password, changed after the current one is given again; every session of theirs ends
    (whoever else holds one is signed out), so the caller starts a new one for the person changing it."""
    found = (await session.execute(select(Person.password_hash).where(Person.id == person_id))).first()
    await session.rollback()  # no connection held while argon2 runs (see authenticate_person)
    if found is None or not await _off_loop(passwords.verify_password, found.password_hash, current):
        raise Invalid("the current password is not right", field="current_password")
    if new == current:
        raise Invalid("choose a password other than the current one", field="new_password")
    try:
        new_hash = await _off_loop(passwords.hash_password, new)
    except passwords.WeakPassword as exc:
        raise Invalid(str(exc), field="new_password") from None
    person = await session.get(Person, person_id, populate_existing=True)
    if person is None:
        raise NotFound("no such person")
    person.password_hash = new_hash
    person.must_change_password = False
    await session.commit()
    await sessions.end_all(person_id)


async def get_person(session: AsyncSession, workspace_id: uuid.UUID, person_id: uuid.UUID) -> Person:
    person = await session.get(Person, person_id)
    if person is None or person.workspace_id != workspace_id:
        raise NotFound("no such person")
    return person


async def list_people(session: AsyncSession, workspace_id: uuid.UUID) -> list[Person]:
    return list(await session.scalars(select(Person).where(Person.workspace_id == workspace_id).order_by(Person.email)))


async def _other_enabled_admins(session: AsyncSession, person: Person) -> int:
    return await session.scalar(
        select(func.count()).select_from(Person).where(
            Person.workspace_id == person.workspace_id, Person.role == Role.ADMIN,
            Person.disabled_at.is_(None), Person.id != person.id,
        )
    ) or 0


async def _keep_an_admin(session: AsyncSession, person: Person, what: str) -> None:
    if person.role == Role.ADMIN and person.disabled_at is None and not await _other_enabled_admins(session, person):
        raise Conflict(f"cannot {what} the workspace's last admin: make someone else admin first")


async def change_role(session: AsyncSession, workspace_id: uuid.UUID, person_id: uuid.UUID, role: Role) -> Person:
    person = await get_person(session, workspace_id, person_id)
    if Role(role) != Role.ADMIN:
        await _keep_an_admin(session, person, "demote")
    person.role = Role(role)
    await session.commit()
    return person


async def disable_person(
    session: AsyncSession, sessions: SessionStore, workspace_id: uuid.UUID, person_id: uuid.UUID
) -> Person:
    """Disabled, and every session of theirs ended at once: their next request is signed out."""
    person = await get_person(session, workspace_id, person_id)
    await _keep_an_admin(session, person, "disable")
    if person.disabled_at is None:
        person.disabled_at = utcnow()
    await session.commit()
    await sessions.end_all(person.id)
    return person


async def enable_person(session: AsyncSession, workspace_id: uuid.UUID, person_id: uuid.UUID) -> Person:
    person = await get_person(session, workspace_id, person_id)
    person.disabled_at = None
    await session.commit()
    return person


def has_people(session: Session) -> bool:
    return session.scalar(select(Person.id).limit(1)) is not None
