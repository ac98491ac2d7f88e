//! [`Errors`]: the collector that reports every problem of one macro input at once
//! (each a `syn::Error` spanned on its token, combined with `syn::Error::combine`).

/// Every problem found so far, combined into one `syn::Error`.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    /// Records a problem.
    pub fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    /// The combined error, if any.
    pub fn into_error(self) -> Option<syn::Error> {
        self.0
    }
}
