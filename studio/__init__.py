"""The content team's studio: a job API (FastAPI) and a page over the dreammover library.

`dreammover studio --model tiny` serves it. Jobs live in a small SQLite store and survive restarts; one
device runs one job at a time from a queue; previews come from the library's `on_event` hook.
"""
