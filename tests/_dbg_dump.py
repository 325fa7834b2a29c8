import json
from temporalio.api.enums.v1 import EventType
async def dump(client, wid, run_id):
    run = run_id
    while run:
        h = await client.get_workflow_handle(wid, run_id=run).fetch_history()
        print("RUN", run, len(h.events))
        nxt = None
        for e in h.events:
            t = EventType.Name(e.event_type).replace("EVENT_TYPE_", "")
            extra = ""
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
                a = e.workflow_execution_update_accepted_event_attributes
                ps = a.accepted_request.input.args.payloads
                extra = a.accepted_request.meta.update_id[:8] + " " + a.accepted_request.input.name + " " + (json.loads(ps[0].data)["meeting_id"] if ps else "")
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
                a = e.workflow_execution_update_completed_event_attributes
                extra = a.meta.update_id[:8]
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                nxt = e.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            print(f"  {e.event_id:4d} {t} {extra}")
        run = nxt


