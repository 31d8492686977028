//! The workloads' control channel: after the ready line a workload waits
//! for input lines on stdin (commands such as `exit` or `reap`), end of
//! file on stdin, SIGTERM or SIGINT, and shuts down on the last three.

use std::ffi::c_int;
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

use crate::workload::{fatal_errno, handler_addr, pipe, set_signal};

/// Write end of the self-pipe the SIGTERM/SIGINT handler writes to.
static SIGNAL_PIPE_WR: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_shutdown_signal(sig: c_int) {
    // SAFETY: only async-signal-safe calls (errno access, write).
    unsafe {
        let errno = *libc::__errno_location();
        let fd = SIGNAL_PIPE_WR.load(Ordering::Relaxed);
        if fd >= 0 {
            // The signal number fits in one byte; a full pipe (EAGAIN)
            // only loses a duplicate notification.
            let byte = sig as u8;
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
        *libc::__errno_location() = errno;
    }
}

/// What ended a workload's wait on stdin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// End of file (or a read error) on stdin.
    Eof,
    /// SIGTERM or SIGINT (the signal number).
    Signal(c_int),
}

/// Something that happened while waiting on stdin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// One line of input, without its line terminator.
    Line(String),
    /// Shut down.
    Shutdown(Shutdown),
}

/// Waits for input lines, end of file on stdin, SIGTERM or SIGINT,
/// without races: the signal handlers write to a self-pipe that is
/// polled together with stdin.
#[derive(Debug)]
pub struct Control {
    signal_rd: c_int,
    buf: Vec<u8>,
    eof: bool,
}

impl Control {
    /// Installs the SIGTERM and SIGINT handlers (no `SA_RESTART`).
    /// Call this first thing in `main`, before forking.
    pub fn install() -> Control {
        let (rd, wr) = pipe();
        // SAFETY: fcntl on descriptors we own.
        unsafe {
            let flags = libc::fcntl(wr, libc::F_GETFL);
            libc::fcntl(wr, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        SIGNAL_PIPE_WR.store(wr, Ordering::Relaxed);
        for sig in [libc::SIGTERM, libc::SIGINT] {
            set_signal(sig, handler_addr(on_shutdown_signal), 0);
        }
        Control {
            signal_rd: rd,
            buf: Vec::new(),
            eof: false,
        }
    }

    fn take_line(&mut self) -> Option<String> {
        let pos = self.buf.iter().position(|&b| b == b'\n')?;
        let line: Vec<u8> = self.buf.drain(..=pos).collect();
        let text = String::from_utf8_lossy(&line[..pos]);
        Some(text.trim_end_matches('\r').to_owned())
    }

    /// Blocks until the next line, end of file, SIGTERM or SIGINT. A
    /// partial last line before end of file is returned as a line.
    pub fn next_event(&mut self) -> Event {
        loop {
            if let Some(line) = self.take_line() {
                return Event::Line(line);
            }
            if self.eof {
                if !self.buf.is_empty() {
                    let rest = std::mem::take(&mut self.buf);
                    return Event::Line(String::from_utf8_lossy(&rest).into_owned());
                }
                return Event::Shutdown(Shutdown::Eof);
            }
            let mut fds = self.poll_fds();
            // SAFETY: fds is a valid array of two pollfds.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                fatal_errno("poll");
            }
            if let Some(event) = self.after_poll(&fds) {
                return event;
            }
        }
    }

    /// Blocks until end of file, SIGTERM or SIGINT, calling `on_line`
    /// for every input line in between.
    pub fn serve(&mut self, mut on_line: impl FnMut(&str)) -> Shutdown {
        loop {
            match self.next_event() {
                Event::Line(line) => on_line(&line),
                Event::Shutdown(why) => return why,
            }
        }
    }

    /// [`Control::serve`] ignoring input lines.
    pub fn wait_shutdown(&mut self) -> Shutdown {
        self.serve(|_| {})
    }

    /// Like [`Control::next_event`], but gives up at `deadline`:
    /// `None` when no line, end of file or signal came by then. Waits
    /// with `ppoll` (nanosecond timeout), so it can pace a schedule.
    pub fn next_event_until(&mut self, deadline: Instant) -> Option<Event> {
        loop {
            if let Some(line) = self.take_line() {
                return Some(Event::Line(line));
            }
            if self.eof {
                // Returns at once once end of file has been seen.
                return Some(self.next_event());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let left = deadline - now;
            let ts = libc::timespec {
                tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: libc::c_long::from(left.subsec_nanos()),
            };
            let mut fds = self.poll_fds();
            // SAFETY: fds is a valid array of two pollfds, ts a valid
            // timespec; a null signal mask means "leave it alone".
            let n = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, &ts, std::ptr::null()) };
            if n < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                fatal_errno("ppoll");
            }
            if n == 0 {
                continue;
            }
            if let Some(ev) = self.after_poll(&fds) {
                return Some(ev);
            }
        }
    }

    /// What both waits poll: the signal self-pipe, then stdin.
    fn poll_fds(&self) -> [libc::pollfd; 2] {
        [self.signal_rd, libc::STDIN_FILENO].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
    }

    /// The reads after `poll` (or `ppoll`), for both waits: a signal byte
    /// is returned as an event, stdin data is buffered (or end of file
    /// noted).
    fn after_poll(&mut self, fds: &[libc::pollfd; 2]) -> Option<Event> {
        if fds[0].revents & libc::POLLIN != 0 {
            let mut byte = 0u8;
            // SAFETY: reading one byte into a valid buffer.
            let r = unsafe { libc::read(self.signal_rd, (&mut byte as *mut u8).cast(), 1) };
            if r == 1 {
                return Some(Event::Shutdown(Shutdown::Signal(c_int::from(byte))));
            }
        }
        let rev = fds[1].revents;
        if rev & libc::POLLNVAL != 0 {
            self.eof = true;
        } else if rev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            let mut chunk = [0u8; 4096];
            // SAFETY: chunk is valid for chunk.len() bytes.
            let r =
                unsafe { libc::read(libc::STDIN_FILENO, chunk.as_mut_ptr().cast(), chunk.len()) };
            if r > 0 {
                self.buf.extend_from_slice(&chunk[..r.unsigned_abs()]);
            } else if r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                self.eof = true;
            }
        }
        None
    }
}
