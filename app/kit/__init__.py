"""The platform's own plumbing, shared by every bounded context and adapter: settings, the database and
its migrations, image storage, logging, telemetry, publishing events, the Celery broker's inventory,
tracked tasks, the embedded Redis and the supervisor `qrflow up` runs. No business rule lives here."""
