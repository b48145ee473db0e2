"""/proc/locks parsing and the holder/waiter/self-deadlock analysis (module_utils/file_locks.py)."""
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import file_locks

KEY = (0xfe, 0, 2146533)
# As kernel 6.x prints it: a flock held by 100 and requested again by 100 (self-deadlock),
# a POSIX lock of 200 with 300 waiting (normal), an OFD lock (PID -1) and a lease.
PROC_LOCKS = """\
1: FLOCK  ADVISORY  WRITE 100 fe:00:2146533 0 EOF
1: -> FLOCK  ADVISORY  WRITE 100 fe:00:2146533 0 EOF
2: POSIX  ADVISORY  WRITE 200 fe:00:77 0 EOF
2: -> POSIX  ADVISORY  WRITE 300 fe:00:77 0 9
3: OFDLCK ADVISORY  READ  -1 fe:00:88 0 EOF
3:  -> OFDLCK ADVISORY  WRITE -1 fe:00:88 0 EOF
4: LEASE  ACTIVE    READ  400 00:2e:99 0 EOF
5: FLOCK  ADVISORY  READ  500 fe:00:66 0 EOF
5: -> FLOCK  ADVISORY  READ  500 fe:00:66 0 EOF
garbage line
"""


def test_parse_proc_locks():
    locks = file_locks.parse_proc_locks(PROC_LOCKS)
    assert len(locks) == 9
    first, waiter = locks[0], locks[1]
    assert (first.lock_id, first.type, first.access, first.pid, first.blocked) == (1, "FLOCK", "WRITE", 100, False)
    assert waiter.blocked and waiter.file_key == KEY and waiter.end is None
    assert locks[3].end == 9 and locks[3].pid == 300
    assert locks[5].blocked and locks[5].pid == -1
    assert locks[6].file_key == (0, 0x2e, 99)


def test_self_deadlock_on_flock():
    result = file_locks.analyse(file_locks.parse_proc_locks(PROC_LOCKS), [], KEY)
    assert [h["pid"] for h in result["holders"]] == [100]
    assert result["waiters"][0]["pid"] == 100 and result["waiters"][0]["blocked_by"] == [100]
    [dead] = result["self_deadlocks"]
    assert dead["pid"] == 100 and dead["holding"][0]["lock_id"] == 1


def test_normal_holder_and_waiter_is_not_a_self_deadlock():
    result = file_locks.analyse(file_locks.parse_proc_locks(PROC_LOCKS), [], (0xfe, 0, 77))
    assert [h["pid"] for h in result["holders"]] == [200]
    assert [(w["pid"], w["blocked_by"]) for w in result["waiters"]] == [(300, [200])]
    assert result["self_deadlocks"] == []


def test_ofd_locks_are_attributed_through_fdinfo():
    locks = file_locks.parse_proc_locks(PROC_LOCKS)
    held = file_locks.parse_lock_line("1: OFDLCK ADVISORY  READ  -1 fe:00:88 0 EOF")  # fdinfo numbers from 1
    fd_locks = [file_locks.FdLock(pid=700, fd=5, path="/x", lock=held)]
    result = file_locks.analyse(locks, fd_locks, (0xfe, 0, 88))
    assert [(h["pid"], h["lock"]["lock_id"], h["fds"]) for h in result["holders"]] == [(700, 3, [5])]
    assert result["waiters"][0]["blocked_by"] == [700]
    assert result["self_deadlocks"] == []  # the waiter's PID (-1) is unknown: no claim


def test_shared_locks_do_not_conflict():
    result = file_locks.analyse(file_locks.parse_proc_locks(PROC_LOCKS), [], (0xfe, 0, 66))
    assert result["self_deadlocks"] == []


def test_contended_files():
    keys = file_locks.contended_files(file_locks.parse_proc_locks(PROC_LOCKS))
    assert keys == sorted([KEY, (0xfe, 0, 77), (0xfe, 0, 88), (0xfe, 0, 66)])


def _fd(pid, fd, line):
    return file_locks.FdLock(pid=pid, fd=fd, path="/x", lock=file_locks.parse_lock_line(line))


def test_waiter_sharing_the_holding_description_waits_for_the_others():
    """fork: parent 100 and child 101 share the description that holds the flock; 101 waits through its own."""
    locks = file_locks.parse_proc_locks("1: FLOCK  ADVISORY  WRITE 100 fe:00:5 0 EOF\n"
                                      "1: -> FLOCK  ADVISORY  WRITE 101 fe:00:5 0 EOF\n")
    shared = [_fd(100, 3, "1: FLOCK  ADVISORY  WRITE 100 fe:00:5 0 EOF"),
              _fd(101, 3, "1: FLOCK  ADVISORY  WRITE 100 fe:00:5 0 EOF")]
    result = file_locks.analyse(locks, shared, (0xfe, 0, 5))
    assert result["self_deadlocks"] == []
    [waiter] = result["waiters"]
    assert waiter["blocked_by"] == [100, 101] and waiter["shares_description_with"] == [100]
    # The parent gone without unlocking: the child alone holds the description.
    result = file_locks.analyse(locks, shared[1:], (0xfe, 0, 5))
    assert [d["pid"] for d in result["self_deadlocks"]] == [101]


def test_polling_waiters_from_watched_opens():
    locks = file_locks.parse_proc_locks("1: FLOCK  ADVISORY  WRITE 100 fe:00:5 0 EOF\n")
    result = file_locks.analyse(locks, [], (0xfe, 0, 5), opens={100: 12, 200: 9, 300: 1})
    assert [(w["pid"], w["wait"], w["blocked_by"]) for w in result["waiters"]] == [(100, "polling", [100]),
                                                                                 (200, "polling", [100])]
    assert [(d["pid"], d["wait"], d["opens"]) for d in result["self_deadlocks"]] == [(100, "polling", 12)]
    shared = file_locks.parse_proc_locks("1: FLOCK  ADVISORY  READ 100 fe:00:5 0 EOF\n")
    assert file_locks.analyse(shared, [], (0xfe, 0, 5), opens={200: 9})["waiters"] == []  # nothing exclusive held


def test_stack_lock_files():
    stack = 'Thread 1 (idle): "MainThread"\n    BaseFileLock.acquire (filelock/_api.py:344)\n' \
            '        Locals:\n            lock_filename: "/run/x.lock"\n            start_time: 3.0\n'
    assert file_locks.stack_lock_files(stack) == ["/run/x.lock"]
    assert file_locks.stack_lock_files(None) == []
