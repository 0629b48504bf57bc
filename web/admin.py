"""Admin pages and API: users (add, disable) and review policies (independent decisions per dataset)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from review import assignments
from web import accounts
from web.accounts import Principal
from web.desk import page
from web.security import admin, wiring_of

router = APIRouter(tags=["admin"])


class NewUser(BaseModel):
    name: str
    role: str = Field("reviewer", description="reviewer or admin")
    password: str | None = Field(None, description="at least 8 characters; none: API tokens only")


@router.get("/api/users", summary="Users and roles (admins)")
def api_users(request: Request, _: Principal = Depends(admin)) -> list[dict[str, Any]]:
    with wiring_of(request).uow() as uow:
        return [accounts.user_dict(u) for u in uow.users.list()]


@router.post("/api/users", summary="Add a user (admins)")
def api_add_user(request: Request, body: NewUser, _: Principal = Depends(admin)) -> dict[str, Any]:
    with wiring_of(request).uow() as uow:
        user = accounts.add_user(uow, body.name, body.role, body.password)
        uow.commit()
        return accounts.user_dict(user)


@router.post("/api/users/{name}/disable", summary="Disable a user: their sessions and tokens stop at once (admins)")
def api_disable(request: Request, name: str, _: Principal = Depends(admin)) -> dict[str, Any]:
    with wiring_of(request).uow() as uow:
        accounts.disable_user(uow, name)
        uow.commit()
    return {"name": name, "enabled": False}


@router.get("/admin/users", response_class=HTMLResponse, include_in_schema=False)
def users_page(request: Request, error: str | None = None, _: Principal = Depends(admin)) -> Response:
    with wiring_of(request).uow() as uow:
        users = [accounts.user_dict(u) for u in uow.users.list()]
    return page(request, "users.html", users=users, error=error)


@router.post("/admin/users", include_in_schema=False)
def users_form(request: Request, name: str = Form(...), role: str = Form("reviewer"), password: str = Form(""),
               _: Principal = Depends(admin)) -> Response:
    with wiring_of(request).uow() as uow:
        try:
            accounts.add_user(uow, name, role, password or None)
        except ValueError as exc:
            return users_page(request, error=str(exc), _=_)
        uow.commit()
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/admin/users/{name}/disable", include_in_schema=False)
def users_disable(request: Request, name: str, _: Principal = Depends(admin)) -> Response:
    with wiring_of(request).uow() as uow:
        accounts.disable_user(uow, name)
        uow.commit()
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/admin/required-decisions", include_in_schema=False)
def required_form(request: Request, dataset: str = Form(...), n: int = Form(...),
                  _: Principal = Depends(admin)) -> Response:
    with wiring_of(request).uow() as uow:
        assignments.set_required(uow, dataset, n)
        uow.commit()
    return RedirectResponse("/adjudicate", status_code=303)
