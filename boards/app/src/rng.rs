//! One hardware random number generator shared by its several users.
//!
//! The client wants an RNG for reconnect jitter and the WebSocket connector
//! one for handshake keys and frame masks, each by value; a board has one
//! TRNG. [`SharedRng`] is a `Copy` handle to a `RefCell` around it. Every
//! call borrows it for one synchronous fill, never across an `.await`, so
//! borrows never overlap within the one task that runs the client.
//!
//! It adds no randomness of its own: it is as good (and as much a
//! `CryptoRng`) as the generator it wraps.

use core::cell::RefCell;

use rand_core::{CryptoRng, RngCore};

/// A `Copy` handle to a generator in a `RefCell`, for one task.
#[derive(Debug)]
pub struct SharedRng<'r, R>(&'r RefCell<R>);

impl<'r, R> SharedRng<'r, R> {
    /// A handle to `rng`.
    pub fn new(rng: &'r RefCell<R>) -> Self {
        Self(rng)
    }
}

impl<R> Clone for SharedRng<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for SharedRng<'_, R> {}

impl<R: RngCore> RngCore for SharedRng<'_, R> {
    fn next_u32(&mut self) -> u32 {
        self.0.borrow_mut().next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.0.borrow_mut().next_u64()
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.borrow_mut().fill_bytes(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.borrow_mut().try_fill_bytes(dest)
    }
}

impl<R: CryptoRng> CryptoRng for SharedRng<'_, R> {}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u64);
    impl RngCore for Counter {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 += 1;
            self.0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(self.next_u64() as u8);
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    #[test]
    fn handles_draw_from_the_one_generator_in_turn() {
        let cell = RefCell::new(Counter(0));
        let (mut a, mut b) = (SharedRng::new(&cell), SharedRng::new(&cell));
        assert_eq!(a.next_u64(), 1);
        assert_eq!(b.next_u64(), 2);
        let mut buf = [0u8; 3];
        a.fill_bytes(&mut buf);
        assert_eq!(buf, [3, 3, 3]);
    }
}
