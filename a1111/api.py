"""HTTP routes beside the WebUI's own API, for scripts, bots and tests (registered when the WebUI runs with --api):

    GET  /concept-erasure/v1/methods   the methods with their defaults, the layer sets, presets and request fields
    GET  /concept-erasure/v1/model     the loaded model: name, architecture, the fingerprint LoRAs record
                                       (?exact=true adds a SHA-256 of every weight, to check it is unchanged)
    POST /concept-erasure/v1/erase     the tab's fields as JSON; answers the LoRA's name and path, audit and timings
    POST /concept-erasure/v1/check     {"lora": NAME, "strength": S}: audits that LoRA on the loaded checkpoint and
                                       says whether the erasure held there (held, verdict, audit)
    POST /concept-erasure/v1/attack    {"lora": NAME, "concept"?, "attacks"?, "budget"?, "seed"?, "samples"?,
                                       "held_out"?}: tries to bring the erased concept back (success_rate per attack
                                       and overall, the best prompts)

An erasure holds the WebUI's GPU queue like a generation and reports through `/sdapi/v1/progress`;
`/sdapi/v1/interrupt` stops it. Errors answer a JSON `detail` that says what to fix: bad input 422, another erasure
running or an interrupted one 409, out of memory 503. `--api-auth` protects these routes as it does the WebUI's.
"""

from __future__ import annotations

import base64
import io
import secrets
from typing import Any

from fastapi import Body, Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from erasure_core import Cancelled, ConfigError, ErasureError, ModelError, NumericalError, ResourceError
from erasure_core.backends.base import weights_fingerprint
from erasure_core.frontend import json_safe

from .backend import loaded_unet, webui_architecture, weights_sha256
from .host import WebUIHost, api_credentials, api_enabled, gpu_queue, webui_job
from .jobs import Busy, attack_lora, check_lora, exclusive_run, method_info, parse_request, run_job

PREFIX = "/concept-erasure/v1"
STATUS = {ConfigError: 422, ModelError: 422, NumericalError: 422, Busy: 409, Cancelled: 409, ResourceError: 503}


def status_of(error: ErasureError) -> int:
    return next((code for kind, code in STATUS.items() if isinstance(error, kind)), 500)


def error_response(error: ErasureError) -> JSONResponse:
    return JSONResponse({"error": type(error).__name__, "detail": str(error)}, status_code=status_of(error))


def get_methods() -> dict[str, Any]:
    return method_info()


def get_model(exact: bool = False) -> JSONResponse:
    """Which model an erasure would train on now (waits for a running erasure or generation to finish)."""
    try:
        with gpu_queue():
            sd_model = WebUIHost().sd_model()
            unet = loaded_unet(sd_model)
            answer = {
                "name": getattr(getattr(sd_model, "sd_checkpoint_info", None), "name_for_extra", None),
                "arch": webui_architecture(sd_model),
                "fingerprint": weights_fingerprint(unet),
            }
            if exact:
                answer["sha256"] = weights_sha256(unet)
    except ErasureError as exc:
        return error_response(exc)
    return JSONResponse(answer)


def post_erase(body: Any = Body(...)) -> JSONResponse:  # noqa: B008 - FastAPI's way to take the raw JSON body
    """Run one erasure on the loaded model; the answer comes when the LoRA is saved (minutes on a GPU)."""
    try:
        request = parse_request(body)
        with exclusive_run(), webui_job():
            job = run_job(request, WebUIHost())
    except ErasureError as exc:
        return error_response(exc)
    answer = job.to_dict()
    if job.grid is not None:
        buffer = io.BytesIO()
        job.grid.save(buffer, format="PNG")
        answer["preview"] = base64.b64encode(buffer.getvalue()).decode("ascii")
    return JSONResponse(json_safe(answer))


def post_check(body: Any = Body(...)) -> JSONResponse:  # noqa: B008 - FastAPI's way to take the raw JSON body
    """Audit an erasure LoRA on the loaded checkpoint: {"lora": NAME, "strength": S} → held, verdict, audit."""
    try:
        if not isinstance(body, dict) or not isinstance(body.get("lora"), str):
            raise ConfigError('Send a JSON object {"lora": NAME, "strength": 1.0}; NAME as <lora:NAME:1> takes it.')
        if unknown := set(body) - {"lora", "strength"}:
            raise ConfigError(f"Unknown field(s) {sorted(unknown)}; a check takes 'lora' and 'strength'.")
        strength = body.get("strength", 1.0)
        if isinstance(strength, bool) or not isinstance(strength, int | float):
            raise ConfigError(f"'strength' must be a number; got {strength!r}.")
        with exclusive_run(), webui_job():
            answer = check_lora(body["lora"], float(strength), WebUIHost())
    except ErasureError as exc:
        return error_response(exc)
    return JSONResponse(json_safe(answer))


def post_attack(body: Any = Body(...)) -> JSONResponse:  # noqa: B008 - FastAPI's way to take the raw JSON body
    """The recovery-attack audit of an erasure LoRA on the loaded checkpoint (`jobs.attack_lora`)."""
    try:
        if not isinstance(body, dict):
            raise ConfigError('Send a JSON object {"lora": NAME}; NAME as <lora:NAME:1> takes it.')
        with exclusive_run(), webui_job():
            answer = attack_lora(body, WebUIHost())
    except ErasureError as exc:
        return error_response(exc)
    return JSONResponse(json_safe(answer))


def _require_credentials(credentials: dict[str, str]):
    security = HTTPBasic()

    def check(given: HTTPBasicCredentials = Depends(security)) -> None:  # noqa: B008 - FastAPI dependency
        expected = credentials.get(given.username)
        if expected is None or not secrets.compare_digest(given.password, expected):
            raise HTTPException(
                status_code=401, detail="Incorrect username or password", headers={"WWW-Authenticate": "Basic"}
            )

    return check


def register(app: FastAPI, credentials: dict[str, str] | None = None) -> None:
    dependencies = [Depends(_require_credentials(credentials))] if credentials else []
    app.add_api_route(f"{PREFIX}/methods", get_methods, methods=["GET"], dependencies=dependencies)
    app.add_api_route(f"{PREFIX}/model", get_model, methods=["GET"], dependencies=dependencies)
    app.add_api_route(f"{PREFIX}/erase", post_erase, methods=["POST"], dependencies=dependencies)
    app.add_api_route(f"{PREFIX}/check", post_check, methods=["POST"], dependencies=dependencies)
    app.add_api_route(f"{PREFIX}/attack", post_attack, methods=["POST"], dependencies=dependencies)


def on_app_started(_demo: Any, app: FastAPI) -> None:
    """`script_callbacks.on_app_started`: the routes exist where the WebUI's own API does."""
    if api_enabled():
        register(app, api_credentials())
