//! The RX thread around [`RxQueue::handle_frame`]: read the TAP until told to stop, trace each frame with its decision, end on a device that is gone.

use super::*;

impl RxQueue {
    /// The RX thread: reads frames from `source` until `stop` is set,
    /// recording each with its decision in `tracer` (a no-op when off).
    /// Tells every processor to shut down when it ends. An error means
    /// the device failed for good: it is gone (deleted, detached), or
    /// reads kept failing for [`RX_FAILURE_LIMIT`].
    pub fn run(
        mut self,
        mut source: Box<dyn FrameSource>,
        tracer: Arc<Tracer>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<()> {
        let r = self.receive_until(&mut *source, &tracer, &stop);
        for q in &self.queues {
            let _ = q.send(ToProcessor::Shutdown);
        }
        r
    }

    pub(super) fn receive_until(
        &mut self,
        source: &mut dyn FrameSource,
        tracer: &Arc<Tracer>,
        stop: &AtomicBool,
    ) -> std::io::Result<()> {
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        let mut failing_since: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            self.reap_closed();
            self.take_handed_back(tracer);
            match source.recv_frame(&mut buf, Duration::from_millis(100)) {
                Ok(Some(rx)) => {
                    failing_since = None;
                    self.rx_link = source.link();
                    let len = rx.len.min(buf.len());
                    self.take_frame(&mut buf, len, rx.checksum_trusted, tracer);
                }
                Ok(None) => failing_since = None,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if device_gone(&e) => return Err(e),
                Err(e) => {
                    // Transient (no buffer space ...): back off, keep
                    // checking `stop`, never spin; but not for ever.
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= RX_FAILURE_LIMIT {
                        return Err(e);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        Ok(())
    }
}
