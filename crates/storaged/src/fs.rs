//! The local-filesystem backend: `LocalFileSystem` for everything except
//! multipart (large) uploads, which stream into their staging file with
//! direct I/O (`O_DIRECT`).
//!
//! Why: a buffered write copies every byte into the page cache, and on the
//! small VMs we run on that copy — page allocation included — costs as much
//! CPU as receiving the bytes from the socket, so a server that receives and
//! writes saturates two cores where `dd` needs one. With direct I/O the
//! device reads from our buffer: per upload one thread copies parts into
//! aligned windows while another waits for the device to write the last
//! ones and the request task receives the next part. A large upload also no
//! longer evicts the hot data of queries from the page cache (MinIO makes
//! the same choice for large objects). Small objects (single `put`) stay buffered.
//!
//! Atomicity is unchanged: parts go to `<key>#<n>` (the same staging name
//! `LocalFileSystem` uses, removed at start-up if a crash left it), the file
//! is cut to its exact length, then renamed over the key. Filesystems that
//! refuse `O_DIRECT` (tmpfs) get buffered writes on the same path.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};
use tokio::sync::oneshot;

/// Direct I/O wants buffers, offsets and lengths aligned to the device's
/// logical block; 4 KiB covers 512-byte and 4 KiB devices.
const ALIGN: usize = 4096;
/// Bytes per direct write. Larger buys nothing measurable (1–64 MiB were
/// within noise with `dd oflag=direct` here) and costs memory per upload
/// (`WINDOWS` of these).
const WRITE_SIZE: usize = 4 << 20;

/// `LocalFileSystem` with direct-I/O multipart uploads.
#[derive(Debug)]
pub struct FsStore {
    inner: LocalFileSystem,
    direct_io: bool,
}

impl FsStore {
    /// `direct_io = false` keeps `LocalFileSystem`'s buffered uploads.
    pub fn new(inner: LocalFileSystem, direct_io: bool) -> Self {
        Self { inner, direct_io }
    }
}

impl fmt::Display for FsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FsStore({}, direct_io={})", self.inner, self.direct_io)
    }
}

fn store_error(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "FsStore",
        source: message.into(),
    }
}

fn io_error(path: &FsPath, what: &str, source: std::io::Error) -> object_store::Error {
    store_error(format!("{what} {}: {source}", path.display()))
}

#[async_trait]
impl ObjectStore for FsStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        if !self.direct_io || !opts.attributes.is_empty() {
            // Attributes are refused by `LocalFileSystem` with its own error.
            return self.inner.put_multipart_opts(location, opts).await;
        }
        let dest = self.inner.path_to_filesystem(location)?;
        let upload = tokio::task::spawn_blocking(move || DirectUpload::start(dest))
            .await
            .map_err(|e| store_error(format!("starting the upload: {e}")))??;
        Ok(Box::new(upload))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

enum Msg {
    Part(PutPayload, oneshot::Sender<object_store::Result<()>>),
    Complete(oneshot::Sender<object_store::Result<PutResult>>),
    Abort(oneshot::Sender<object_store::Result<()>>),
}

/// A multipart upload written by its own thread. `put_part` queues the part
/// in call order (so parts may be awaited in any order) and resolves once
/// the writer has taken it; `complete` writes the tail, trims the file and
/// renames it into place.
#[derive(Debug)]
struct DirectUpload {
    tx: Option<mpsc::Sender<Msg>>,
}

impl DirectUpload {
    /// Opens the staging file and starts the writer thread (blocking).
    fn start(dest: PathBuf) -> object_store::Result<Self> {
        let (file, src, direct) = open_staging(&dest)?;
        let (tx, rx) = mpsc::channel();
        let started = Writer::new(file, src.clone(), dest, direct).and_then(|writer| {
            std::thread::Builder::new()
                .name("lakehouse-upload".to_string())
                .spawn(move || writer.run(rx))
                .map_err(|e| io_error(&src, "starting the writer for", e))
        });
        if let Err(e) = started {
            let _ = std::fs::remove_file(&src);
            return Err(e);
        }
        Ok(Self { tx: Some(tx) })
    }

    fn send(&self, msg: Msg) -> object_store::Result<()> {
        match &self.tx {
            Some(tx) if tx.send(msg).is_ok() => Ok(()),
            _ => Err(store_error(
                "the upload was already completed or aborted".to_string(),
            )),
        }
    }
}

fn finished() -> object_store::Error {
    store_error("the upload's writer stopped".to_string())
}

#[async_trait]
impl MultipartUpload for DirectUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let (ack, done) = oneshot::channel();
        let sent = self.send(Msg::Part(data, ack));
        Box::pin(async move {
            sent?;
            done.await.map_err(|_| finished())?
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let (ack, done) = oneshot::channel();
        self.send(Msg::Complete(ack))?;
        self.tx = None;
        done.await.map_err(|_| finished())?
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let (ack, done) = oneshot::channel();
        self.send(Msg::Abort(ack))?;
        self.tx = None;
        done.await.map_err(|_| finished())?
    }
}

/// Creates `<dest>#<n>` for the first free `n`, creating parent directories.
/// Returns whether the file is open for direct I/O.
fn open_staging(dest: &FsPath) -> object_store::Result<(File, PathBuf, bool)> {
    let mut n = 1u64;
    let mut direct = true;
    loop {
        let mut name = dest.as_os_str().to_owned();
        name.push(format!("#{n}"));
        let src = PathBuf::from(name);
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        if direct {
            opts.custom_flags(libc::O_DIRECT);
        }
        match opts.open(&src) {
            Ok(f) => return Ok((f, src, direct)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => n += 1,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let parent = src.parent().unwrap_or(FsPath::new("/"));
                std::fs::create_dir_all(parent)
                    .map_err(|e| io_error(parent, "creating directory", e))?;
            }
            // The filesystem does not do direct I/O (tmpfs, some FUSE).
            Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => direct = false,
            Err(e) => return Err(io_error(&src, "creating", e)),
        }
    }
}

/// A block-aligned `WRITE_SIZE` window inside a slightly larger allocation.
struct Window {
    buf: Vec<u8>,
    start: usize,
}

impl Window {
    fn new() -> Self {
        let buf = vec![0u8; WRITE_SIZE + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN);
        Self { buf, start }
    }

    fn bytes(&self, len: usize) -> &[u8] {
        &self.buf[self.start..self.start + len]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + WRITE_SIZE]
    }
}

/// A full window to write at `offset`.
struct Job {
    window: Window,
    len: usize,
    offset: u64,
}

/// Windows per upload: one being filled while the others are written, so
/// copying the next bytes overlaps the device writing the last ones.
const WINDOWS: usize = 3;

/// Copies parts into aligned windows (buffered mode: writes them as they
/// come); a second thread does the direct writes, so the copy and the device
/// work overlap.
struct Writer {
    file: Arc<File>,
    src: PathBuf,
    dest: PathBuf,
    /// Direct mode: the I/O thread's queue, and windows coming back from it.
    io: Option<(mpsc::Sender<Job>, mpsc::Receiver<std::io::Result<Window>>)>,
    free: Vec<Window>,
    /// Windows handed to the I/O thread and not yet back.
    out: usize,
    current: Option<Window>,
    filled: usize,
    /// Bytes handed to the disk so far (a multiple of `ALIGN` in direct mode).
    written: u64,
    /// The first write error; every later step reports it.
    failed: Option<String>,
}

impl Writer {
    fn new(file: File, src: PathBuf, dest: PathBuf, direct: bool) -> object_store::Result<Self> {
        let file = Arc::new(file);
        let io = if direct {
            let (job_tx, job_rx) = mpsc::channel::<Job>();
            let (done_tx, done_rx) = mpsc::channel();
            let f = file.clone();
            std::thread::Builder::new()
                .name("lakehouse-dio".to_string())
                .spawn(move || {
                    for job in job_rx {
                        let r = f
                            .write_all_at(job.window.bytes(job.len), job.offset)
                            .map(|()| job.window);
                        if done_tx.send(r).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| io_error(&src, "spawning the writer for", e))?;
            Some((job_tx, done_rx))
        } else {
            None
        };
        let free = if direct {
            (0..WINDOWS).map(|_| Window::new()).collect()
        } else {
            Vec::new()
        };
        Ok(Self {
            file,
            src,
            dest,
            io,
            free,
            out: 0,
            current: None,
            filled: 0,
            written: 0,
            failed: None,
        })
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            match rx.recv() {
                Ok(Msg::Part(data, ack)) => {
                    let r = self.part(&data);
                    drop(data); // free the part before saying it was taken
                    let _ = ack.send(r);
                }
                Ok(Msg::Complete(ack)) => {
                    let r = self.complete();
                    if r.is_err() {
                        let _ = self.remove_staging();
                    }
                    let _ = ack.send(r);
                    return;
                }
                Ok(Msg::Abort(ack)) => {
                    let _ = ack.send(self.remove_staging());
                    return;
                }
                // The upload was dropped unfinished: nothing may stay behind.
                Err(mpsc::RecvError) => {
                    let _ = self.remove_staging();
                    return;
                }
            }
        }
    }

    fn check(&self) -> object_store::Result<()> {
        match &self.failed {
            Some(e) => Err(store_error(e.clone())),
            None => Ok(()),
        }
    }

    fn fail(&mut self, what: &str, e: std::io::Error) -> object_store::Error {
        let err = io_error(&self.src, what, e);
        self.failed = Some(err.to_string());
        err
    }

    fn part(&mut self, data: &PutPayload) -> object_store::Result<()> {
        self.check()?;
        for chunk in data.iter() {
            if self.io.is_none() {
                if let Err(e) = self.file.write_all_at(chunk, self.written) {
                    return Err(self.fail("writing", e));
                }
                self.written += chunk.len() as u64;
                continue;
            }
            let mut rest: &[u8] = chunk;
            while !rest.is_empty() {
                if self.current.is_none() {
                    self.current = Some(self.take_window()?);
                }
                let n = rest.len().min(WRITE_SIZE - self.filled);
                if let Some(w) = self.current.as_mut() {
                    w.bytes_mut()[self.filled..self.filled + n].copy_from_slice(&rest[..n]);
                }
                self.filled += n;
                rest = &rest[n..];
                if self.filled == WRITE_SIZE {
                    self.submit(WRITE_SIZE)?;
                }
            }
        }
        Ok(())
    }

    /// A free window, waiting for the I/O thread to return one if needed.
    fn take_window(&mut self) -> object_store::Result<Window> {
        if let Some(w) = self.free.pop() {
            return Ok(w);
        }
        if self.out > 0 {
            self.reclaim()?;
        }
        Ok(self.free.pop().unwrap_or_else(Window::new))
    }

    /// Waits for one window to come back from the I/O thread.
    fn reclaim(&mut self) -> object_store::Result<()> {
        let Some((_, done)) = &self.io else {
            return Ok(());
        };
        let r = done.recv();
        self.out -= 1;
        match r {
            Ok(Ok(w)) => {
                self.free.push(w);
                Ok(())
            }
            Ok(Err(e)) => Err(self.fail("writing", e)),
            Err(mpsc::RecvError) => {
                Err(self.fail("writing", std::io::Error::other("the I/O thread stopped")))
            }
        }
    }

    /// Hands the first `len` (aligned) bytes of the current window to the
    /// I/O thread.
    fn submit(&mut self, len: usize) -> object_store::Result<()> {
        let (Some(window), Some((jobs, _))) = (self.current.take(), &self.io) else {
            return Ok(());
        };
        let job = Job {
            window,
            len,
            offset: self.written,
        };
        if jobs.send(job).is_err() {
            return Err(self.fail("writing", std::io::Error::other("the I/O thread stopped")));
        }
        self.out += 1;
        self.written += len as u64;
        self.filled = 0;
        Ok(())
    }

    fn complete(&mut self) -> object_store::Result<PutResult> {
        self.check()?;
        let mut size = self.written;
        if self.io.is_some() {
            let tail = self.filled;
            if tail > 0 {
                // Direct writes are whole blocks: write the tail zero-padded
                // to one, then cut the file back to its real length.
                let padded = tail.div_ceil(ALIGN) * ALIGN;
                if let Some(w) = self.current.as_mut() {
                    w.bytes_mut()[tail..padded].fill(0);
                }
                size += tail as u64;
                self.submit(padded)?;
            }
            while self.out > 0 {
                self.reclaim()?;
            }
            if tail > 0
                && let Err(e) = self.file.set_len(size)
            {
                return Err(self.fail("trimming", e));
            }
        }
        if let Err(e) = std::fs::rename(&self.src, &self.dest) {
            return Err(io_error(&self.dest, "renaming the upload to", e));
        }
        let meta = self
            .file
            .metadata()
            .map_err(|e| io_error(&self.dest, "reading metadata of", e))?;
        debug_assert_eq!(meta.len(), size);
        Ok(PutResult {
            e_tag: Some(etag(&meta)),
            version: None,
        })
    }

    fn remove_staging(&self) -> object_store::Result<()> {
        match std::fs::remove_file(&self.src) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&self.src, "removing", e)),
        }
    }
}

/// The ETag `LocalFileSystem` derives from metadata (inode, mtime in µs,
/// size), so HEAD and GET agree with what a PUT returned.
fn etag(meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_micros();
    format!("{:x}-{:x}-{:x}", meta.ino(), mtime, meta.len())
}

/// Chunk size for streaming local files (object_store's default is 8 KiB,
/// far too small for GB/s).
const FILE_CHUNK: usize = 1 << 20;

/// Streams `range` of a local file (what a GET of the fs backend answers
/// with): from a memory map when it is long, else in chunks read on the
/// blocking pool. Either way no async worker waits for the disk.
pub fn file_stream(
    file: std::fs::File,
    range: std::ops::Range<u64>,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    if range.end - range.start >= MMAP_MIN
        && let Ok(stream) = mapped_stream(&file, range.clone())
    {
        return stream;
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut file = file;
        if let Err(e) = file.seek(SeekFrom::Start(range.start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut remaining = range.end - range.start;
        while remaining > 0 {
            let n = remaining.min(FILE_CHUNK as u64);
            // Read into spare capacity: no zero-filling of each chunk.
            let mut buf = Vec::with_capacity(n as usize);
            match (&mut file).take(n).read_to_end(&mut buf) {
                Ok(got) if got as u64 == n => {}
                Ok(_) => {
                    let _ = tx.blocking_send(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file is shorter than its metadata said",
                    )));
                    return;
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
            remaining -= n;
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return; // client went away
            }
        }
    });
    tokio_stream_from(rx)
}

/// Ranges at least this long are sent from a memory map.
const MMAP_MIN: u64 = 8 << 20;

/// Streams `range` of a local file from a read-only memory map: hyper
/// copies straight from the page cache into the socket, one copy fewer
/// than reading into a buffer first (the largest server cost of a GET
/// after the socket itself). A blocking task faults each 4 MiB chunk in
/// before handing it on, so the async workers never wait for the disk.
fn mapped_stream(
    file: &std::fs::File,
    range: std::ops::Range<u64>,
) -> std::io::Result<BoxStream<'static, std::io::Result<Bytes>>> {
    const PAGE: u64 = 4096;
    const STEP: usize = 4 << 20;
    let base = range.start & !(PAGE - 1);
    let len = usize::try_from(range.end - base).map_err(std::io::Error::other)?;
    // SAFETY: a mapped file must not change or shrink while mapped. Objects
    // are immutable once visible: the fs backend writes a staging file and
    // renames it over the key, DELETE unlinks (the inode lives on while
    // mapped), nothing writes to or truncates a visible object, and the
    // data-dir lock keeps other lakehouse processes out.
    #[allow(unsafe_code)]
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(base)
            .len(len)
            .map(file)?
    };
    let _ = map.advise(memmap2::Advice::Sequential);
    let bytes = Bytes::from_owner(map);
    let skip = (range.start - base) as usize;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut at = skip;
        while at < len {
            let n = STEP.min(len - at);
            let chunk = bytes.slice(at..at + n);
            // Fault the pages in here (readahead does the disk I/O in large
            // requests), off the async workers.
            std::hint::black_box(populate(&chunk));
            if tx.blocking_send(Ok(chunk)).is_err() {
                return; // client went away
            }
            at += n;
        }
    });
    Ok(tokio_stream_from(rx))
}

/// Touches one byte per page so the chunk's pages are resident.
fn populate(chunk: &[u8]) -> u64 {
    chunk.iter().step_by(4096).map(|&b| u64::from(b)).sum()
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> BoxStream<'static, T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    fn store(dir: &FsPath, direct_io: bool) -> FsStore {
        FsStore::new(LocalFileSystem::new_with_prefix(dir).unwrap(), direct_io)
    }

    fn bytes(n: usize, seed: u8) -> Bytes {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Odd part sizes cross the aligned window at every offset class; the
    /// object reads back byte-exact and its ETag matches HEAD's.
    #[tokio::test]
    async fn unaligned_parts_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), true);
        for sizes in [
            vec![1],
            vec![ALIGN],
            vec![WRITE_SIZE],
            vec![WRITE_SIZE + 1, 7, ALIGN - 1],
            vec![3 * WRITE_SIZE / 2, WRITE_SIZE / 3, 12_345, 1],
            vec![],
        ] {
            let path = Path::from(format!("a/b/obj-{}", sizes.len()));
            let mut up = s.put_multipart(&path).await.unwrap();
            let mut want = Vec::new();
            for (i, n) in sizes.iter().enumerate() {
                let part = bytes(*n, i as u8);
                want.extend_from_slice(&part);
                up.put_part(part.into()).await.unwrap();
            }
            let put = up.complete().await.unwrap();
            let got = s.get(&path).await.unwrap();
            assert_eq!(got.meta.e_tag, put.e_tag, "{sizes:?}");
            assert_eq!(got.bytes().await.unwrap().as_ref(), &want[..], "{sizes:?}");
        }
        let left: Vec<_> = walk(dir.path())
            .into_iter()
            .filter(|p| p.to_string_lossy().contains('#'))
            .collect();
        assert!(left.is_empty(), "staging files left: {left:?}");
    }

    /// Parts queued together and awaited out of order land in call order.
    #[tokio::test]
    async fn parts_awaited_out_of_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), true);
        let path = Path::from("o");
        let mut up = s.put_multipart(&path).await.unwrap();
        let (a, b, c) = (bytes(5 << 20, 1), bytes(5 << 20, 2), bytes(777, 3));
        let fa = up.put_part(a.clone().into());
        let fb = up.put_part(b.clone().into());
        let fc = up.put_part(c.clone().into());
        fc.await.unwrap();
        fa.await.unwrap();
        fb.await.unwrap();
        up.complete().await.unwrap();
        let got = s.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(got, [a, b, c].concat());
    }

    /// Abort and drop both leave nothing: no object, no staging file.
    #[tokio::test]
    async fn abort_and_drop_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), true);
        let path = Path::from("gone");
        let mut up = s.put_multipart(&path).await.unwrap();
        up.put_part(bytes(WRITE_SIZE + 5, 0).into()).await.unwrap();
        up.abort().await.unwrap();
        let mut up = s.put_multipart(&path).await.unwrap();
        up.put_part(bytes(10, 0).into()).await.unwrap();
        drop(up);
        // The writer removes the staging file once it sees the drop.
        for _ in 0..100 {
            if walk(dir.path()).is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(walk(dir.path()), Vec::<PathBuf>::new());
        assert!(s.head(&path).await.is_err());
    }

    /// A key under an existing object cannot be created: the upload fails
    /// and the object stays as it was.
    #[tokio::test]
    async fn parent_is_an_object() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), true);
        s.put(&Path::from("x"), Bytes::from_static(b"file").into())
            .await
            .unwrap();
        assert!(s.put_multipart(&Path::from("x/y")).await.is_err());
        let got = s
            .get(&Path::from("x"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(got.as_ref(), b"file");
    }

    /// A failing device write surfaces from `complete` (or a later part),
    /// nothing is renamed into place and the staging file is removed.
    #[test]
    fn write_errors_fail_the_upload_and_clean_up() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("obj#1");
        let dest = dir.path().join("obj");
        // Read-only: every write fails (EBADF), in both modes.
        for direct in [true, false] {
            std::fs::write(&src, b"").unwrap();
            let file = File::open(&src).unwrap();
            let writer = Writer::new(file, src.clone(), dest.clone(), direct).unwrap();
            let (tx, rx) = mpsc::channel();
            let t = std::thread::spawn(move || writer.run(rx));
            let mut results = Vec::new();
            for _ in 0..3 {
                let (ack, done) = oneshot::channel();
                tx.send(Msg::Part(bytes(WRITE_SIZE, 1).into(), ack))
                    .unwrap();
                results.push(done.blocking_recv().unwrap().is_ok());
            }
            let (ack, done) = oneshot::channel();
            tx.send(Msg::Complete(ack)).unwrap();
            let err = done.blocking_recv().unwrap().unwrap_err();
            assert!(err.to_string().contains("writing"), "{err}");
            t.join().unwrap();
            assert!(!dest.exists(), "nothing renamed into place");
            assert!(!src.exists(), "staging file removed");
            if !direct {
                // Buffered writes fail on the first part already.
                assert_eq!(results, [false, false, false]);
            }
        }
    }

    fn walk(root: &FsPath) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
        out
    }
}
