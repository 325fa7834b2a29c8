import asyncio, time, uuid, json
from corridor import service
from domain.commands import RequestMeeting
from tests.conftest import make_programme
from tests.test_journey_workflow import enrol, still_clock
from tests._dbg_dump import dump

async def test_dbg(client, store, worker, task_queue):
    svc = client.workflow_service
    orig = svc.update_workflow_execution
    log = []
    async def wrapped(req, **kw):
        t0 = time.monotonic()
        uid = req.request.meta.update_id[:8]
        ps = req.request.input.args.payloads
        m = json.loads(ps[0].data).get("meeting_id") if ps else None
        try:
            r = await orig(req, **kw)
            log.append((round(time.monotonic()-t0, 3), uid, m, "stage", r.stage, r.update_ref.workflow_execution.run_id[:8], str(r.outcome)[:150] if r.HasField("outcome") else None))
            return r
        except Exception as e:
            log.append((t0, uid, m, "EXC", repr(e)[:200]))
            raise
    svc.update_workflow_execution = wrapped
    try:
        for attempt in range(15):
            log.clear()
            pid = f"p-{uuid.uuid4().hex[:10]}"
            handle = await enrol(client, task_queue, make_programme(pid), "f", clock=still_clock(), continue_as_new_after=60)
            first = (await handle.describe()).run_id
            ids = [f"m-{n:02d}" for n in range(40)]
            res = await asyncio.gather(*(service.send(client, pid, "f", RequestMeeting(meeting_id=m, counterpart="A")) for m in ids), return_exceptions=True)
            bad = [(m, r) for m, r in zip(ids, res) if isinstance(r, BaseException)]
            if bad:
                print("ATTEMPT", attempt, bad)
                for l in log:
                    if l[2] in [b[0] for b in bad]:
                        print(l)
                await dump(client, handle.id, first)
                return
    finally:
        svc.update_workflow_execution = orig
