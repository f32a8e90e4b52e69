//! Credentials: what a secret looks like and how it is kept ([`secrets`]), and the front
//! door that turns every credential into a scope or a refusal ([`front_door`]).
//!
//! The two sit in different layers: [`secrets`] is a leaf the store uses to mint and
//! hash, while [`front_door`] asks the backends and builds scopes. The front door's
//! names are re-exported here, so callers write `credentials::admit`.

pub mod front_door;
pub mod secrets;

pub use front_door::{
    Authority, OperatorBound, Presented, Refusal, Surface, TokensOnly, admit, basic_or_bearer,
    bearer, recheck,
};
