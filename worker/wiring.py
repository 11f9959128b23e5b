"""Build every adapter the handlers use, once at start, each closed with the run's exit stack.

The composition root (lifecycle.py) calls `build`; routing.py hands the Adapters to each handler
factory, which picks what its handler needs.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from worker.adapters import localfs, nfs
from worker.adapters.aws import AwsClients
from worker.adapters.dynamodb import Table
from worker.adapters.s3 import S3
from worker.adapters.sqs import Queue
from worker.adapters.storage_gateway import Gateway
from worker.csvconv.pool import FramePool, default_processes, return_large_buffers
from worker.handlers.refresh_job import TABLE_KEY
from worker.metrics import Metrics
from worker.ports import Adapters
from worker.settings import Settings, SidecarSettings


async def build(
    settings: Settings,
    clients: AwsClients,
    stack: AsyncExitStack,
    metrics: Metrics,
    *,
    work_queue: Queue,
) -> Adapters:
    """Open and check what the settings name; a missing queue or table is a ConfigError."""
    csv_results: Queue | None = None
    if settings.csv.result_queue_url:
        csv_results = Queue(await clients.sqs(), settings.csv.result_queue_url)
        await csv_results.check("CSV_RESULT_QUEUE_URL")
    table: Table | None = None
    gateway: Gateway | None = None
    if settings.refresh.table:
        table = Table(await clients.dynamodb(), settings.refresh.table, key=TABLE_KEY)
        await table.check("REFRESH_TABLE")
        gateway = Gateway(
            await clients.storagegateway(), cache_seconds=settings.refresh.share_cache_seconds
        )
    return_large_buffers()
    frames = FramePool(settings.csv.processes or default_processes())
    stack.push_async_callback(asyncio.to_thread, frames.close)
    store = sidecar_store(settings.sidecar)
    if store is not None:
        stack.push_async_callback(store.close)
    return Adapters(
        metrics=metrics,
        objects=S3(await clients.s3()),
        work_queue=work_queue,
        csv_results=csv_results,
        frames=frames,
        refresh_table=table,
        gateway=gateway,
        sidecar_store=store,
    )


def sidecar_store(options: SidecarSettings) -> nfs.NfsStore | localfs.LocalStore | None:
    if options.nfs_url:
        return nfs.NfsStore(
            options.nfs_url, connections=options.nfs_connections, timeout_ms=options.nfs_timeout_ms
        )
    if options.root:
        return localfs.LocalStore(options.root, threads=options.nfs_connections)
    return None
