//! The kernel side: the eBPF programs' loader and reader ([`tracer`]), the
//! wire records they send ([`events`]), and the kernel facts they are built
//! from at run time ([`btf`], [`tracefs`], [`layout`]); [`check`] probes
//! all of it.
pub mod btf;
pub mod check;
pub mod events;
pub mod layout;
pub mod tracefs;
pub mod tracer;
