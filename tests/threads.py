"""Real concurrency for the PostgreSQL tests: work started at the same instant on several database connections."""
import threading

from django.db import connection


def run_together(work, count, *, join_timeout=60):
    """Run work(i) for i in range(count), one thread and one database connection each, released together by a
    barrier (each thread connects first, so the work itself starts at once). Returns (results indexed by i,
    exceptions raised in any thread); a thread still running after `join_timeout` seconds fails the test."""
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def thread_main(i):
        try:
            connection.ensure_connection()
            barrier.wait(timeout=20)
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=thread_main, args=(i,), name=f"concurrent-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=join_timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread is still running (deadlock?)"
    return results, errors
