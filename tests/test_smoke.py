from .support import SmsWorker, add_workplace, run_jobs


def test_enrol_and_answer(app, client, services):
    add_workplace(services)
    worker = SmsWorker(client, "+8801711000001")
    first = worker.enrol()
    assert "1." in first
    run_jobs(app)
