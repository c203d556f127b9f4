"""The soak's load generator: an open-loop steady rate of the weighted mix, over httpx.

Request `i` is sent at `i / rate` seconds whatever happened to the earlier ones (open loop);
when `max_in_flight` requests are already out, the slot is recorded as a client-side
`client_backpressure` failure instead of being sent late.
"""

import asyncio
import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx

from bench.soak_stats import NO_RESPONSE, RequestRecord
from bench.soak_traffic import (
    KeyRole,
    KindSpec,
    MixPlanner,
    Outcome,
    SSEEvent,
    SSEParser,
    is_content_event,
    json_outcome,
    request_body,
    stream_outcome,
)


@dataclass(frozen=True, slots=True)
class LoadPlan:
    rate: float  # requests per second
    duration_s: float
    max_in_flight: int
    kinds: Mapping[str, KindSpec]
    weights: Mapping[str, int]
    keys: Mapping[KeyRole, str]
    id_prefix: str  # request ids are f"{id_prefix}{seq:07d}"
    questions: Sequence[str]


@dataclass(slots=True)
class LoadResult:
    records: list[RequestRecord] = field(default_factory=list)
    id_mismatches: int = 0  # responses whose X-Request-ID is not the one sent
    elapsed_s: float = 0.0


def new_client(base_url: str, max_in_flight: int, timeout_s: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    return httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits)


async def _read_stream(
    spec: KindSpec, response: httpx.Response, started: float
) -> tuple[Outcome, float | None]:
    parser, events, ttft = SSEParser(), list[SSEEvent](), None
    async for line in response.aiter_lines():
        event = parser.feed(line)
        if event is None:
            continue
        events.append(event)
        if ttft is None and is_content_event(spec.api, event):
            ttft = (time.perf_counter() - started) * 1000
    last = parser.feed("")
    if last is not None:
        events.append(last)
    return stream_outcome(spec.api, events), ttft


async def send_one(
    client: httpx.AsyncClient, spec: KindSpec, key: str, request_id: str, question: str, t: float
) -> tuple[RequestRecord, bool]:
    """One request, read to its end; (the record, whether the response echoed our id)."""
    headers = {"authorization": f"Bearer {key}", "x-request-id": request_id}
    body = request_body(spec, question)
    status, ttft, echoed = NO_RESPONSE, None, True
    started = time.perf_counter()
    try:
        async with client.stream("POST", spec.path, json=body, headers=headers) as response:
            status = response.status_code
            echoed = response.headers.get("x-request-id") == request_id
            if spec.stream and status == 200:
                outcome, ttft = await _read_stream(spec, response, started)
            else:
                outcome = json_outcome(spec.api, status, (await response.aread()).decode())
    except httpx.TimeoutException:
        outcome = Outcome("client_timeout")
    except httpx.HTTPError as exc:  # connection refused or reset, broken stream, ...
        outcome = Outcome(f"client_{type(exc).__name__}")
    latency_ms = (time.perf_counter() - started) * 1000
    failed_200 = status == 200 and outcome.error_type is not None
    record = RequestRecord(
        t=round(t, 3),
        kind=spec.name,
        status=status,
        error_type=outcome.error_type,
        latency_ms=round(latency_ms, 3),
        expected=status in spec.expect and not failed_200,
        request_id=request_id,
        model=spec.model,
        ttft_ms=None if ttft is None else round(ttft, 3),
        input_tokens=outcome.input_tokens,
        output_tokens=outcome.output_tokens,
    )
    return record, echoed


def _skipped(spec: KindSpec, request_id: str, t: float) -> RequestRecord:
    return RequestRecord(
        t=round(t, 3),
        kind=spec.name,
        status=NO_RESPONSE,
        error_type="client_backpressure",
        latency_ms=0.0,
        expected=False,
        request_id=request_id,
        model=spec.model,
    )


async def run_load(
    client: httpx.AsyncClient, plan: LoadPlan, result: LoadResult | None = None
) -> LoadResult:
    """Send the plan's traffic into `result` (records appear as requests finish); returns
    once every request sent has finished."""
    result = LoadResult() if result is None else result
    tasks = set[asyncio.Task[None]]()
    planner = MixPlanner(plan.weights)

    async def one(spec: KindSpec, request_id: str, question: str, t: float) -> None:
        record, echoed = await send_one(client, spec, plan.keys[spec.key], request_id, question, t)
        result.records.append(record)
        result.id_mismatches += not echoed

    t0 = time.perf_counter()
    for seq in itertools.count():
        at = seq / plan.rate
        if at >= plan.duration_s:
            break
        delay = t0 + at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        spec = plan.kinds[next(planner)]
        request_id = f"{plan.id_prefix}{seq:07d}"
        if len(tasks) >= plan.max_in_flight:
            result.records.append(_skipped(spec, request_id, at))
            continue
        task = asyncio.create_task(
            one(spec, request_id, plan.questions[seq % len(plan.questions)], at)
        )
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    result.elapsed_s = round(time.perf_counter() - t0, 3)
    result.records.sort(key=lambda r: r.t)
    return result


async def warm_up(
    client: httpx.AsyncClient,
    kinds: Mapping[str, KindSpec],
    keys: Mapping[KeyRole, str],
    id_prefix: str,
    question: str,
    timeout_s: float,
) -> list[RequestRecord]:
    """Until every kind that can succeed on the normal key has succeeded once (replicas up,
    first calls paid), retrying every 2 s; then one more round of every such kind at once."""
    wanted = [s for s in kinds.values() if s.expects_success and s.key == "normal"]
    pending, records = list(wanted), list[RequestRecord]()
    counter = itertools.count()
    deadline = time.monotonic() + timeout_s
    while pending:
        sent = await asyncio.gather(
            *(
                send_one(client, s, keys["normal"], f"{id_prefix}{next(counter):05d}", question, 0)
                for s in pending
            )
        )
        records.extend(record for record, _ in sent)
        pending = [s for s, (record, _) in zip(pending, sent) if not record.ok]
        if pending and time.monotonic() > deadline:
            failures = {r.kind: r.error_key for r, _ in sent if not r.ok}
            raise RuntimeError(f"warm-up: these kinds never succeeded: {failures}")
        if pending:
            await asyncio.sleep(2.0)
    again = await asyncio.gather(
        *(
            send_one(client, s, keys["normal"], f"{id_prefix}{next(counter):05d}", question, 0)
            for s in wanted
        )
    )
    return records + [record for record, _ in again]
