//! libpcap, loaded at run time: the six functions a capture filter needs
//! (`pcap_open_dead`, `pcap_compile`, `pcap_geterr`, `pcap_close`,
//! `pcap_offline_filter`, `pcap_freecode`), found with `dlopen` the first
//! time a filter is compiled, never at start-up and never at build time.
//!
//! Why loaded and not linked: linking libpcap made building vnic need
//! libpcap's headers and `pkg-config` (`-lpcap`), where everything else
//! needs only Rust, for a feature most runs never use. Loaded, a vnic
//! without libpcap on the machine runs everything but capture filters,
//! which say in one line what to install.
//!
//! Why the FFI is written here: no crate loads libpcap at run time (the
//! `pcap` crate links it; its `libloading` use is Windows' wpcap.dll
//! only), and the six prototypes below are all vnic needs of it.
//! `libloading` does the `dlopen`/`dlsym`; what is hand-written is the
//! prototypes and the two structs, which must match libpcap's `pcap.h`
//! and `bpf.h` (`struct bpf_program { u_int bf_len; struct bpf_insn
//! *bf_insns; }`, `struct pcap_pkthdr { struct timeval ts; bpf_u_int32
//! caplen; bpf_u_int32 len; }`). Those layouts and prototypes are
//! libpcap's ABI, unchanged since the `libpcap.so.0.8` soname.
//!
//! Which file: `libpcap.so.0.8` (Debian and Ubuntu's soname, package
//! `libpcap0.8`, which tshark and tcpdump install), then `libpcap.so.1`
//! (Fedora, Arch, Alpine), then `libpcap.so` (a development install).
//! When `VNIC_LIBPCAP` is set (and not empty), its value is the only
//! path tried: for a libpcap outside the loader's path, and for tests.

use libloading::Library;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::OnceLock;

/// The environment variable that, set, names the only libpcap tried.
pub(crate) const ENV: &str = "VNIC_LIBPCAP";

/// The files tried in turn when [`ENV`] is not set.
const SONAMES: [&str; 3] = ["libpcap.so.0.8", "libpcap.so.1", "libpcap.so"];

/// `DLT_EN10MB`: programs are compiled for Ethernet frames.
const LINKTYPE_ETHERNET: c_int = 1;

/// The dead handle's snapshot length (the `pcap` crate's, tcpdump's
/// historical default); filters only read the frames they are given.
const SNAPLEN: c_int = 65535;

/// libpcap's `pcap_t`, only ever behind a pointer.
#[repr(C)]
struct PcapT {
    _opaque: [u8; 0],
}

/// libpcap's `struct bpf_program`: `u_int bf_len; struct bpf_insn
/// *bf_insns;` (the instructions are libpcap's, never read here).
#[repr(C)]
struct BpfProgram {
    bf_len: c_uint,
    bf_insns: *mut c_void,
}

/// libpcap's `struct pcap_pkthdr`: `struct timeval ts; bpf_u_int32
/// caplen; bpf_u_int32 len;`.
#[repr(C)]
struct PktHdr {
    ts: libc::timeval,
    caplen: u32,
    len: u32,
}

type OpenDead = unsafe extern "C" fn(c_int, c_int) -> *mut PcapT;
type Compile =
    unsafe extern "C" fn(*mut PcapT, *mut BpfProgram, *const c_char, c_int, u32) -> c_int;
type GetErr = unsafe extern "C" fn(*mut PcapT) -> *mut c_char;
type Close = unsafe extern "C" fn(*mut PcapT);
type OfflineFilter = unsafe extern "C" fn(*const BpfProgram, *const PktHdr, *const u8) -> c_int;
type FreeCode = unsafe extern "C" fn(*mut BpfProgram);

/// A loaded libpcap: the library (kept open for as long as the process
/// runs, so the function pointers stay valid) and its six functions.
struct Libpcap {
    _lib: Library,
    open_dead: OpenDead,
    compile: Compile,
    geterr: GetErr,
    close: Close,
    offline_filter: OfflineFilter,
    freecode: FreeCode,
}

/// The libpcap loaded by the first filter compiled. A failed load is not
/// kept: installing libpcap while vnic runs makes the next filter work.
static LOADED: OnceLock<Libpcap> = OnceLock::new();

/// The process's libpcap, loaded now if it is not yet. The error is the
/// one-line reason, naming what to install.
fn libpcap() -> Result<&'static Libpcap, String> {
    if let Some(l) = LOADED.get() {
        return Ok(l);
    }
    let lib = match std::env::var(ENV) {
        Ok(path) if !path.is_empty() => {
            Libpcap::open(&[path.as_str()], &format!(", named by {ENV}"))
        }
        _ => Libpcap::open(&SONAMES, ": apt-get install libpcap0.8"),
    }?;
    Ok(LOADED.get_or_init(|| lib))
}

impl Libpcap {
    /// Opens the first of `paths` that loads and finds the six functions
    /// in it. The error says what went wrong with the first path, and
    /// when it was not found at all, `hint` after `PATH not found`.
    fn open(paths: &[&str], hint: &str) -> Result<Libpcap, String> {
        let mut first_err = None;
        for path in paths {
            // SAFETY: loading runs the library's initialisers; libpcap's
            // (from the system, or the file the user named) are libpcap's
            // own and have no requirement on the caller.
            match unsafe { Library::new(path) } {
                Ok(lib) => return Libpcap::with(lib, path),
                Err(e) => {
                    first_err.get_or_insert_with(|| (*path, e.to_string()));
                }
            }
        }
        let (path, why) = first_err.unwrap_or(("libpcap", String::from("nothing to try")));
        if why.contains("No such file or directory") {
            Err(format!("{path} not found{hint}"))
        } else {
            Err(why)
        }
    }

    /// Finds the six functions in `lib` (loaded from `path`).
    fn with(lib: Library, path: &str) -> Result<Libpcap, String> {
        /// Copies the function pointer `name` out of `lib`.
        ///
        /// SAFETY (the caller's): `T` is the function's true C prototype.
        unsafe fn sym<T: Copy>(lib: &Library, path: &str, name: &str) -> Result<T, String> {
            let mut cname = name.as_bytes().to_vec();
            cname.push(0);
            // SAFETY: the caller gives `T` as the function's prototype
            // (from libpcap's pcap.h, written out above); the pointer is
            // used only while `lib` stays loaded, which `Libpcap` holds.
            unsafe { lib.get::<T>(&cname) }
                .map(|s| *s)
                .map_err(|_| format!("{path} has no {name}: not a libpcap"))
        }
        // SAFETY: each type is the prototype pcap.h declares for that
        // name (see the types above).
        unsafe {
            Ok(Libpcap {
                open_dead: sym(&lib, path, "pcap_open_dead")?,
                compile: sym(&lib, path, "pcap_compile")?,
                geterr: sym(&lib, path, "pcap_geterr")?,
                close: sym(&lib, path, "pcap_close")?,
                offline_filter: sym(&lib, path, "pcap_offline_filter")?,
                freecode: sym(&lib, path, "pcap_freecode")?,
                _lib: lib,
            })
        }
    }
}

/// Why [`Program::compile`] failed.
#[derive(Debug)]
pub(crate) enum CompileError {
    /// libpcap could not be loaded: the one-line reason.
    Unloadable(String),
    /// libpcap refused the expression: its message.
    Refused(String),
}

/// A BPF program compiled by libpcap for Ethernet frames, freed
/// (`pcap_freecode`) on drop. It holds libpcap's pointer to its
/// instructions, so it is neither `Send` nor `Sync`.
pub(crate) struct Program {
    lib: &'static Libpcap,
    bpf: BpfProgram,
}

/// A dead handle (`pcap_open_dead`), closed on drop.
struct DeadHandle {
    lib: &'static Libpcap,
    p: *mut PcapT,
}

impl Drop for DeadHandle {
    fn drop(&mut self) {
        // SAFETY: `p` came from `pcap_open_dead`, is not null, and is
        // closed once, here.
        unsafe { (self.lib.close)(self.p) }
    }
}

impl Program {
    /// Compiles `expr` as tcpdump does (`pcap_compile` with the
    /// optimizer, netmask 0, as the `pcap` crate passed) on a dead
    /// Ethernet handle, closed before returning.
    pub(crate) fn compile(expr: &str) -> Result<Program, CompileError> {
        let lib = libpcap().map_err(CompileError::Unloadable)?;
        let text = CString::new(expr)
            .map_err(|_| CompileError::Refused("it contains a NUL byte".to_owned()))?;
        // SAFETY: integer arguments; the result is checked for null.
        let p = unsafe { (lib.open_dead)(LINKTYPE_ETHERNET, SNAPLEN) };
        if p.is_null() {
            return Err(CompileError::Refused(
                "libpcap could not open a dead handle".to_owned(),
            ));
        }
        let dead = DeadHandle { lib, p };
        let mut bpf = BpfProgram {
            bf_len: 0,
            bf_insns: std::ptr::null_mut(),
        };
        // SAFETY: a live handle, a program struct of libpcap's layout to
        // fill, a NUL-terminated string that outlives the call.
        let rc = unsafe { (lib.compile)(dead.p, &mut bpf, text.as_ptr(), 1, 0) };
        if rc != 0 {
            // SAFETY: the handle is live; pcap_geterr returns its
            // NUL-terminated error buffer, copied before the handle is
            // closed (on `dead`'s drop).
            let why = unsafe { CStr::from_ptr((lib.geterr)(dead.p)) }
                .to_string_lossy()
                .trim_start_matches("can't parse filter expression: ")
                .to_owned();
            return Err(CompileError::Refused(why));
        }
        Ok(Program { lib, bpf })
    }

    /// True if the program accepts `frame` (whole, as captured).
    pub(crate) fn matches(&self, frame: &[u8]) -> bool {
        let Ok(len) = u32::try_from(frame.len()) else {
            return false;
        };
        let hdr = PktHdr {
            ts: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            caplen: len,
            len,
        };
        // SAFETY: a program pcap_compile filled and not yet freed, a
        // header whose caplen is the buffer's length (libpcap reads no
        // further), and the buffer itself.
        unsafe { (self.lib.offline_filter)(&self.bpf, &hdr, frame.as_ptr()) != 0 }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: the program pcap_compile filled, freed once, here.
        unsafe { (self.lib.freecode)(&mut self.bpf) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_names_what_to_install() {
        let Err(e) = Libpcap::open(
            &["/nonexistent/libpcap.so.0.8"],
            ": apt-get install libpcap0.8",
        ) else {
            panic!("loaded a file that does not exist");
        };
        assert_eq!(
            e,
            "/nonexistent/libpcap.so.0.8 not found: apt-get install libpcap0.8"
        );
    }

    #[test]
    fn a_library_that_is_not_libpcap_is_refused() {
        // libc loads but has none of libpcap's functions.
        let Err(e) = Libpcap::open(&["libc.so.6"], "-") else {
            panic!("took libc for libpcap");
        };
        assert_eq!(e, "libc.so.6 has no pcap_open_dead: not a libpcap");
    }

    #[test]
    fn a_compiled_program_is_libpcaps_layout() {
        // The program struct as libpcap filled it: instructions there,
        // and a count a real program has (a few to a few dozen).
        let p = Program::compile("tcp port 80").expect("compiles");
        assert!(!p.bpf.bf_insns.is_null());
        assert!((2..64).contains(&p.bpf.bf_len), "{}", p.bpf.bf_len);
    }
}
