"""The launcher Lambda: turns events into queued jobs and starts just enough ECS workers.

Deploying it (README, "The launcher Lambda", lists the options):
- Code: `make launcher-zip` builds launcher.zip (this package alone; the Python runtime
  provides boto3). Handler: `launcher.handler.lambda_handler`.
- Permissions: `sqs:SendMessage` and `sqs:GetQueueAttributes` on QUEUE_URL; `ecs:RunTask`
  on TASK_DEFINITION, `ecs:ListTasks` on CLUSTER, `ecs:TagResource` (RunTask sets tags), and
  `iam:PassRole` for the task definition's task and execution roles.
- Triggers: S3 notifications, SNS subscriptions, EventBridge rules, direct invocations, or an
  SQS event source mapping with `FunctionResponseTypes: [ReportBatchItemFailures]` (the
  handler answers `batchItemFailures`).
- A reserved concurrency of 1 keeps MAX_TASKS exact even when events arrive together (each
  invocation counts the workers it can see before starting more).
"""
