//! The frame writer: wsgate encodes every data frame it sends itself (tungstenite's write buffer
//! keeps its largest size for the socket's life) and writes whole batches, never a frame after a
//! partial one.

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, timeout_at, Instant};

use super::close::CLOSE_LINGER;

pub(crate) const OPCODE_TEXT: u8 = 0x1;
pub(crate) const OPCODE_PING: u8 = 0x9;

/// Why the write side gave up.
pub(crate) enum WriteFailed {
    /// The peer cannot keep up: it fell too far behind the broadcast, or a write did not complete
    /// within the write timeout. Nothing is half-written: a close frame may follow.
    Slow,
    /// A write stalled part-way through a frame and could not be finished.
    Cut,
    /// The connection is broken.
    Broken,
}

impl From<WriteFailed> for super::Ending {
    fn from(failed: WriteFailed) -> Self {
        match failed {
            WriteFailed::Slow => super::Ending::Close(crate::protocol::CloseReason::SlowConsumer),
            WriteFailed::Cut => super::Ending::Cut(crate::protocol::CloseReason::SlowConsumer),
            WriteFailed::Broken => super::Ending::ByPeer,
        }
    }
}

/// Writes `out` (whole frames) by `deadline`. When the deadline passes with part of `out` written,
/// the peer holds the start of a frame whose rest it has not got: anything else written now would
/// be read as that frame's payload. So the rest gets one more bounded chance (`CLOSE_LINGER`), and
/// if that fails too, the connection must be cut without another byte.
pub(crate) async fn write_frames<W>(
    io: &mut W,
    out: &[u8],
    deadline: Instant,
) -> Result<(), WriteFailed>
where
    W: AsyncWrite + Unpin,
{
    let mut written = 0;
    let all = async {
        while written < out.len() {
            match io.write(&out[written..]).await? {
                0 => return Err(std::io::ErrorKind::WriteZero.into()),
                n => written += n,
            }
        }
        io.flush().await
    };
    match timeout_at(deadline, all).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(WriteFailed::Broken),
        // Nothing of it left: the peer is between frames, and a close frame may follow.
        Err(_) if written == 0 => Err(WriteFailed::Slow),
        Err(_) => match timeout(CLOSE_LINGER, io.write_all(&out[written..])).await {
            Ok(Ok(())) => Err(WriteFailed::Slow),
            Ok(Err(_)) => Err(WriteFailed::Broken),
            Err(_) => Err(WriteFailed::Cut),
        },
    }
}

/// Appends one unmasked, final server frame (RFC 6455 section 5.2).
pub(crate) fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::CloseReason;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

    /// Parses one frame header with tungstenite (the reference decoder): header and payload length.
    fn decode(bytes: &[u8]) -> (FrameHeader, u64, usize) {
        let mut cursor = std::io::Cursor::new(bytes);
        let (header, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        (header, len, cursor.position() as usize)
    }

    #[test]
    fn frames_carry_7_16_and_64_bit_lengths() {
        for (len, head_len) in [
            (0, 2),
            (125, 2),
            (126, 4),
            (65_535, 4),
            (65_536, 10),
            (70_000, 10),
        ] {
            let payload = vec![b'a'; len];
            let mut out = Vec::new();
            encode_frame(&mut out, OPCODE_TEXT, &payload);
            let (header, decoded_len, used) = decode(&out);
            assert!(
                header.is_final && !header.rsv1 && header.mask.is_none(),
                "{len}"
            );
            assert_eq!(header.opcode, OpCode::Data(Data::Text));
            assert_eq!((decoded_len as usize, used), (len, head_len), "{len}");
            assert_eq!(&out[used..], &payload[..]);
        }
        let mut ping = Vec::new();
        encode_frame(&mut ping, OPCODE_PING, &[]);
        assert_eq!(ping, [0x89, 0x00]);
    }

    #[test]
    fn close_frames_carry_code_and_reason() {
        for reason in [
            CloseReason::ProtocolError,
            CloseReason::InvalidUtf8,
            CloseReason::SlowConsumer,
            CloseReason::RateLimited,
        ] {
            let frame = reason.frame();
            assert_eq!(u16::from(frame.code), reason.code());
            assert_eq!(frame.reason.as_str(), reason.name());
        }
        assert_eq!(
            (
                CloseReason::ProtocolError.code(),
                CloseReason::InvalidUtf8.code()
            ),
            (1002, 1007)
        );
    }

    /// A pipe whose reader takes `capacity` bytes before the writer blocks.
    fn pipe(capacity: usize) -> (tokio::io::DuplexStream, tokio::io::DuplexStream) {
        tokio::io::duplex(capacity)
    }

    fn frames(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..n {
            encode_frame(&mut out, OPCODE_TEXT, &[b'x'; 40]);
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_stalled_between_frames_is_slow_and_a_close_may_follow() {
        let (mut writer, _reader) = pipe(16);
        writer.write_all(&[0; 16]).await.unwrap(); // the peer's buffer is already full
        let deadline = Instant::now() + Duration::from_secs(1);
        let result = write_frames(&mut writer, &frames(2), deadline).await;
        assert!(matches!(result, Err(WriteFailed::Slow)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_stalled_mid_frame_is_cut_and_writes_nothing_more() {
        let (mut writer, mut reader) = pipe(16);
        let out = frames(3);
        let deadline = Instant::now() + Duration::from_secs(1);
        let result = write_frames(&mut writer, &out, deadline).await;
        assert!(matches!(result, Err(WriteFailed::Cut)));
        drop(writer);
        let mut seen = Vec::new();
        reader.read_to_end(&mut seen).await.unwrap();
        assert_eq!(
            seen,
            out[..16],
            "only the start of the first frame, nothing after it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_stalled_mid_frame_is_finished_when_the_peer_reads_again() {
        let (mut writer, mut reader) = pipe(16);
        let out = frames(3);
        let reading = tokio::spawn(async move {
            // Resumes reading after the write deadline, within the linger.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let mut seen = Vec::new();
            reader.read_to_end(&mut seen).await.unwrap();
            seen
        });
        let deadline = Instant::now() + Duration::from_secs(1);
        let result = write_frames(&mut writer, &out, deadline).await;
        assert!(
            matches!(result, Err(WriteFailed::Slow)),
            "finished, then closed as slow"
        );
        drop(writer);
        assert_eq!(reading.await.unwrap(), out, "every frame whole");
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_within_the_deadline_is_whole() {
        let (mut writer, mut reader) = pipe(1 << 16);
        let out = frames(10);
        write_frames(&mut writer, &out, Instant::now() + Duration::from_secs(1))
            .await
            .ok()
            .expect("written");
        drop(writer);
        let mut seen = Vec::new();
        reader.read_to_end(&mut seen).await.unwrap();
        assert_eq!(seen, out);
    }
}
