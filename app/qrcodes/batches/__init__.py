"""Batches: many codes from one request (a JSON list or a CSV file), rendered by chunk tasks on queue qr_batch.

intake.py   parse and validate every row, build the rows to insert (pure, no database)
service.py  the gateway's use cases: create (one transaction, then chunk events), progress, archive
jobs.py     the workers': render a chunk (jobs.render_code per code), republish stale chunks
archive.py  the zip, streamed: every image in the batch's formats and manifest.csv
"""
