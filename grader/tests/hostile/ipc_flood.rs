//! Hostile submission: creates 300 System V message queues (keys
//! 0x6367_0000 + i), 200 POSIX shared memory objects (`/cgh-shm-i`, 4 KiB
//! each) and 50 named semaphores (`/cgh-sem-i`), and exits without removing
//! any of them.

use std::ffi::CString;

fn main() {
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, b"cgh-ipc\0".as_ptr()) };
    let mut queues = 0;
    for i in 0..300 {
        // SAFETY: msgget takes plain integers.
        if unsafe { libc::msgget(0x6367_0000 + i, libc::IPC_CREAT | 0o600) } >= 0 {
            queues += 1;
        }
    }
    let mut shms = 0;
    for i in 0..200 {
        let name = CString::new(format!("/cgh-shm-{i}")).unwrap();
        // SAFETY: a NUL-terminated name; the descriptor is closed below.
        unsafe {
            let fd = libc::shm_open(name.as_ptr(), libc::O_CREAT | libc::O_RDWR, 0o600);
            if fd >= 0 {
                if libc::ftruncate(fd, 4096) == 0 {
                    shms += 1;
                }
                libc::close(fd);
            }
        }
    }
    let mut sems = 0;
    for i in 0..50 {
        let name = CString::new(format!("/cgh-sem-{i}")).unwrap();
        // SAFETY: a NUL-terminated name, a mode and an initial value.
        unsafe {
            let sem = libc::sem_open(
                name.as_ptr(),
                libc::O_CREAT,
                0o600 as libc::c_uint,
                1 as libc::c_uint,
            );
            if sem != libc::SEM_FAILED {
                sems += 1;
                libc::sem_close(sem);
            }
        }
    }
    println!("left {queues} message queues, {shms} shared memory objects, {sems} semaphores");
}
