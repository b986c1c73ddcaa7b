//! libvirt's domain events, through the raw functions of `virt-sys` (the `virt` crate runs
//! the event loop but has no domain-event callbacks). This is the one module where `unsafe`
//! is allowed: each block says why it is sound. What leaves it is safe: [`Event`]s on a
//! channel, [`Subscription::cancel`], [`disk_errors`] and [`state`].
//!
//! Callbacks run on the event-loop thread ([`start_loop`]); each owns a boxed `Sender` that
//! libvirt frees through [`free_sender`] when the callback is deregistered or the connection
//! is freed. A callback never panics (that would unwind into C): it only formats and sends.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::mpsc::Sender;
use std::sync::Once;

use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;

/// What libvirt told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON`: a disk's I/O failed.
    IoError {
        domain: String,
        uuid: String,
        /// The disk's source (file, block device or volume), as libvirt names it.
        src_path: String,
        /// The device alias (`virtio-disk0`, `ua-...`); the live XML maps it to the target.
        dev_alias: String,
        /// `VIR_DOMAIN_EVENT_IO_ERROR_*`: none, pause, report.
        action: i32,
        /// `enospc`, `eio`, `eperm`, ... (may be empty).
        reason: String,
    },
    /// `VIR_DOMAIN_EVENT_ID_LIFECYCLE`.
    Lifecycle {
        domain: String,
        uuid: String,
        /// `VIR_DOMAIN_EVENT_*` (started, suspended, resumed, stopped, ...).
        event: i32,
        /// The event's detail (`VIR_DOMAIN_EVENT_SUSPENDED_IOERROR`, ...).
        detail: i32,
    },
    /// The connection closed (`VIR_CONNECT_CLOSE_REASON_*`): libvirtd went away or the
    /// keepalive timed out.
    Closed { reason: i32 },
}

pub const LIFECYCLE_STARTED: i32 = sys::VIR_DOMAIN_EVENT_STARTED as i32;
pub const LIFECYCLE_SUSPENDED: i32 = sys::VIR_DOMAIN_EVENT_SUSPENDED as i32;
pub const LIFECYCLE_RESUMED: i32 = sys::VIR_DOMAIN_EVENT_RESUMED as i32;
pub const LIFECYCLE_STOPPED: i32 = sys::VIR_DOMAIN_EVENT_STOPPED as i32;
pub const SUSPENDED_IOERROR: i32 = sys::VIR_DOMAIN_EVENT_SUSPENDED_IOERROR as i32;
pub const STATE_PAUSED: i32 = sys::VIR_DOMAIN_PAUSED as i32;
pub const PAUSED_IOERROR: i32 = sys::VIR_DOMAIN_PAUSED_IOERROR as i32;
pub const DISK_ERROR_NO_SPACE: i32 = sys::VIR_DOMAIN_DISK_ERROR_NO_SPACE as i32;

extern "C" {
    /// libc's `free`: virDomainGetDiskErrors hands out strings the caller frees.
    fn free(p: *mut c_void);
}

static LOOP: Once = Once::new();

/// Registers libvirt's default event loop and runs it on its own thread, once per process.
/// Must come before the first connection is opened (events of earlier connections are not
/// delivered).
pub fn start_loop() -> Result<(), virt::error::Error> {
    let mut result = Ok(());
    LOOP.call_once(|| {
        result = virt::event::event_register_default_impl();
        if result.is_ok() {
            std::thread::Builder::new()
                .name("libvirt-events".into())
                .spawn(|| loop {
                    if virt::event::event_run_default_impl().is_err() {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                })
                .map(drop)
                .unwrap_or_else(|e| {
                    eprintln!("vmrescue: cannot start the libvirt event thread: {e}")
                });
        }
    });
    result
}

/// Callbacks registered on one connection; [`Subscription::cancel`] them before the
/// connection is dropped.
pub struct Subscription {
    callbacks: Vec<c_int>,
    close: bool,
}

/// Registers the I/O error, lifecycle and close callbacks on `conn`, each sending to `tx`.
/// Also turns libvirt's keepalive on (5 s, 3 missed), so a dead remote daemon is noticed.
pub fn subscribe(conn: &Connect, tx: &Sender<Event>) -> Result<Subscription, virt::error::Error> {
    let mut sub = Subscription {
        callbacks: Vec::new(),
        close: false,
    };
    // SAFETY: `conn` is a live connection for the duration of this call (borrowed); the
    // pointer is only passed to libvirt functions that take a new reference where they keep it.
    let ptr = unsafe { conn.as_ptr() };
    let io: IoErrorReasonFn = on_io_error;
    let life: LifecycleFn = on_lifecycle;
    for (id, cb) in [
        (
            sys::VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON as c_int,
            // SAFETY: libvirt calls an IO_ERROR_REASON callback with exactly the signature of
            // `IoErrorReasonFn` (virConnectDomainEventIOErrorReasonCallback); the generic type
            // is only the registration's carrier, as the VIR_DOMAIN_EVENT_CALLBACK macro casts.
            unsafe { std::mem::transmute::<IoErrorReasonFn, GenericFn>(io) },
        ),
        (
            sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE as c_int,
            // SAFETY: as above, for virConnectDomainEventCallback and LIFECYCLE.
            unsafe { std::mem::transmute::<LifecycleFn, GenericFn>(life) },
        ),
    ] {
        let opaque = Box::into_raw(Box::new(tx.clone())).cast::<c_void>();
        // SAFETY: `ptr` is live; a null domain means every domain; `opaque` is a leaked
        // Box<Sender<Event>> that libvirt hands back to the callback and then to `free_sender`
        // exactly once.
        let id = unsafe {
            sys::virConnectDomainEventRegisterAny(
                ptr,
                std::ptr::null_mut(),
                id,
                Some(cb),
                opaque,
                Some(free_sender),
            )
        };
        if id < 0 {
            // SAFETY: registration failed, so libvirt did not take `opaque`: it is ours to free.
            unsafe { free_sender(opaque) };
            let e = virt::error::Error::last_error();
            sub.cancel(conn);
            return Err(e);
        }
        sub.callbacks.push(id);
    }
    let opaque = Box::into_raw(Box::new(tx.clone())).cast::<c_void>();
    // SAFETY: as for the domain callbacks; `on_close` has virConnectCloseFunc's signature.
    let rc = unsafe {
        sys::virConnectRegisterCloseCallback(ptr, Some(on_close), opaque, Some(free_sender))
    };
    if rc < 0 {
        // SAFETY: not registered, so still ours.
        unsafe { free_sender(opaque) };
    } else {
        sub.close = true;
    }
    // SAFETY: `ptr` is live; keepalive needs the event loop, which `start_loop` runs.
    let _ = unsafe { sys::virConnectSetKeepAlive(ptr, 5, 3) };
    Ok(sub)
}

impl Subscription {
    /// Deregisters the callbacks (errors ignored: on a closed connection libvirt frees them
    /// with the connection).
    pub fn cancel(&mut self, conn: &Connect) {
        // SAFETY: `conn` is live (borrowed) for these calls.
        let ptr = unsafe { conn.as_ptr() };
        for id in self.callbacks.drain(..) {
            // SAFETY: `id` came from virConnectDomainEventRegisterAny on this connection.
            let _ = unsafe { sys::virConnectDomainEventDeregisterAny(ptr, id) };
        }
        if std::mem::take(&mut self.close) {
            // SAFETY: `on_close` was registered on this connection.
            let _ = unsafe { sys::virConnectUnregisterCloseCallback(ptr, Some(on_close)) };
        }
    }
}

/// The disks of `dom` with an error libvirt recorded (`virsh domblkerror`): target and
/// `VIR_DOMAIN_DISK_ERROR_*` code.
pub fn disk_errors(dom: &Domain) -> Result<Vec<(String, i32)>, virt::error::Error> {
    const MAX: usize = 64;
    let mut errs = [sys::virDomainDiskError {
        disk: std::ptr::null_mut(),
        error: 0,
    }; MAX];
    // SAFETY: `dom` is live (borrowed); `errs` has room for MAX entries, the count passed.
    let n =
        unsafe { sys::virDomainGetDiskErrors(dom.as_ptr(), errs.as_mut_ptr(), MAX as c_uint, 0) };
    if n < 0 {
        return Err(virt::error::Error::last_error());
    }
    let mut out = Vec::new();
    for e in errs.iter().take((n as usize).min(MAX)) {
        if e.disk.is_null() {
            continue;
        }
        // libvirt filled `disk` with a NUL-terminated string it allocated.
        out.push((text(e.disk), e.error));
        // SAFETY: the caller frees each `disk` with free(), as virDomainGetDiskErrors says.
        unsafe { free(e.disk.cast()) };
    }
    Ok(out)
}

/// `(state, reason)` as libvirt's raw numbers (`VIR_DOMAIN_PAUSED`, `VIR_DOMAIN_PAUSED_IOERROR`).
pub fn state(dom: &Domain) -> Result<(i32, i32), virt::error::Error> {
    let (mut state, mut reason): (c_int, c_int) = (-1, -1);
    // SAFETY: `dom` is live (borrowed); both out-pointers point to locals.
    let rc = unsafe { sys::virDomainGetState(dom.as_ptr(), &mut state, &mut reason, 0) };
    if rc < 0 {
        return Err(virt::error::Error::last_error());
    }
    Ok((state, reason))
}

type GenericFn = unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void);
type IoErrorReasonFn = unsafe extern "C" fn(
    sys::virConnectPtr,
    sys::virDomainPtr,
    *const c_char,
    *const c_char,
    c_int,
    *const c_char,
    *mut c_void,
);
type LifecycleFn =
    unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, c_int, c_int, *mut c_void) -> c_int;

/// An owned copy of a C string that may be null (then empty); invalid UTF-8 is replaced.
fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: callers pass libvirt strings that are NUL-terminated and live for this call.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The name and UUID of an event's domain.
fn who(dom: sys::virDomainPtr) -> (String, String) {
    if dom.is_null() {
        return (String::new(), String::new());
    }
    // SAFETY: libvirt passes a live domain to the callback; the name belongs to it.
    let name = text(unsafe { sys::virDomainGetName(dom) });
    let mut buf = [0 as c_char; sys::VIR_UUID_STRING_BUFLEN as usize];
    // SAFETY: `buf` has the VIR_UUID_STRING_BUFLEN bytes the call writes (NUL included).
    let rc = unsafe { sys::virDomainGetUUIDString(dom, buf.as_mut_ptr()) };
    let uuid = if rc == 0 {
        text(buf.as_ptr())
    } else {
        String::new()
    };
    (name, uuid)
}

/// Sends `ev` on the Sender behind `opaque`.
fn send(opaque: *mut c_void, ev: Event) {
    if opaque.is_null() {
        return;
    }
    // SAFETY: `opaque` is the Box<Sender<Event>> registered with this callback; libvirt keeps
    // it alive until `free_sender`, which it never runs while a callback runs.
    let tx = unsafe { &*opaque.cast::<Sender<Event>>() };
    let _ = tx.send(ev);
}

unsafe extern "C" fn on_io_error(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    src_path: *const c_char,
    dev_alias: *const c_char,
    action: c_int,
    reason: *const c_char,
    opaque: *mut c_void,
) {
    let (domain, uuid) = who(dom);
    send(
        opaque,
        Event::IoError {
            domain,
            uuid,
            src_path: text(src_path),
            dev_alias: text(dev_alias),
            action,
            reason: text(reason),
        },
    );
}

unsafe extern "C" fn on_lifecycle(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    event: c_int,
    detail: c_int,
    opaque: *mut c_void,
) -> c_int {
    let (domain, uuid) = who(dom);
    send(
        opaque,
        Event::Lifecycle {
            domain,
            uuid,
            event,
            detail,
        },
    );
    0
}

unsafe extern "C" fn on_close(_conn: sys::virConnectPtr, reason: c_int, opaque: *mut c_void) {
    send(opaque, Event::Closed { reason });
}

/// libvirt's free callback for an `opaque` made by `subscribe`.
unsafe extern "C" fn free_sender(opaque: *mut c_void) {
    if !opaque.is_null() {
        // SAFETY: `opaque` came from Box::into_raw(Box<Sender<Event>>) and is freed once.
        drop(unsafe { Box::from_raw(opaque.cast::<Sender<Event>>()) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_strings_and_domains_are_empty_not_a_crash() {
        assert_eq!(text(std::ptr::null()), "");
        assert_eq!(who(std::ptr::null_mut()), (String::new(), String::new()));
        send(std::ptr::null_mut(), Event::Closed { reason: 0 });
    }

    #[test]
    fn the_callbacks_send_what_libvirt_passes_and_free_the_sender_once() {
        let (tx, rx) = std::sync::mpsc::channel();
        let opaque = Box::into_raw(Box::new(tx)).cast::<c_void>();
        let src = c"/var/lib/libvirt/images/web.qcow2";
        let alias = c"virtio-disk0";
        let reason = c"enospc";
        // SAFETY: the same contract libvirt keeps: live strings, our opaque, no domain.
        unsafe {
            on_io_error(
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                src.as_ptr(),
                alias.as_ptr(),
                1,
                reason.as_ptr(),
                opaque,
            );
            on_lifecycle(std::ptr::null_mut(), std::ptr::null_mut(), 3, 2, opaque);
            on_close(std::ptr::null_mut(), 1, opaque);
            free_sender(opaque);
        }
        let got: Vec<Event> = rx.iter().collect();
        assert_eq!(got.len(), 3, "the channel closed once the sender was freed");
        assert!(
            matches!(&got[0], Event::IoError { src_path, dev_alias, action: 1, reason, .. }
            if src_path == "/var/lib/libvirt/images/web.qcow2" && dev_alias == "virtio-disk0" && reason == "enospc")
        );
        assert_eq!(
            got[1],
            Event::Lifecycle {
                domain: String::new(),
                uuid: String::new(),
                event: LIFECYCLE_SUSPENDED,
                detail: SUSPENDED_IOERROR
            }
        );
        assert_eq!(got[2], Event::Closed { reason: 1 });
    }
}
