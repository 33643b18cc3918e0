"""The durable workflows of a worker: DBOS launched in this process with the procurement
runtime, and the ``procurement`` router consumer that feeds them.

Only worker processes (``medbridge worker``, and ``medbridge run`` which is one) launch DBOS;
``api`` and ``listen`` never do: a decided task is found by its workflow when it next
re-reads the task. The replenishment planner runs where ``planner_enabled`` is true (see
``Settings.planner_enabled``: two planners at once could propose the same position twice).
"""

from __future__ import annotations

from collections.abc import Callable

from medbridge.bus.consumer import Consumer
from medbridge.canonical.partners import TradingPartner
from medbridge.flows.procurement import Procurement
from medbridge.flows.replenishment import ReplenishmentPlanner
from medbridge.flows.trade import SupplierChannel, TradeOutbox
from medbridge.flows.workflows import ProcurementRouter, Workflows
from medbridge.runtime.policies import consumer_retry, planner_policy, procurement_policy
from medbridge.runtime.root import Root

ROUTER = "procurement"


def build_workflows(
    mb: Root,
    channels: Callable[[TradingPartner], SupplierChannel] | None = None,
) -> Workflows:
    """Launch DBOS with the procurement runtime and register the router consumer in
    ``mb.consumers`` (``channels``: how orders reach suppliers, default the partners'
    configured ones). The workflows reach the ERP through the outbox only: each
    destination's ``ErpPosting`` worker (``runtime.processes``) makes their calls."""
    s = mb.settings
    work_queues = mb.work_queues()

    runtime = Procurement(
        engine=mb.engine,
        masterdata=mb.masterdata,
        intake=mb.intake,
        outbox=TradeOutbox(mb.engine, channels or mb.supplier_channel),
        partners=mb.partners,
        work_queues=work_queues,
        planner=ReplenishmentPlanner(mb.engine, mb.masterdata, work_queues, planner_policy(s)),
        policy=procurement_policy(s, auto_receive=mb.auto_receive),
        router=mb.erp_router(),
    )
    workflows = Workflows(
        runtime,
        s.database_url,
        system_database=s.workflow_database_url,
        schema=s.workflow_schema,
        poll=s.workflow_poll_interval,
    )
    workflows.launch()
    mb.consumers[ROUTER] = Consumer(
        mb.bus,
        ROUTER,
        ProcurementRouter(runtime),
        consumer_retry(s),
        batch_size=s.consumer_batch_size,
    )
    return workflows
