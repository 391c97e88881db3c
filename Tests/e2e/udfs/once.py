"""One misbehaviour per run, shared by the test UDFs: the first worker process to claim the
flag file misbehaves, every other one (a second worker, a restarted one) behaves.

The claim is atomic (O_CREAT | O_EXCL). Checking whether the file exists and then creating it
lets two workers that reach the check at once both misbehave."""
import os


def first_time(flag: str) -> bool:
    try:
        fd = os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True
