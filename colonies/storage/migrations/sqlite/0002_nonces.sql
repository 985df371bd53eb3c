-- Replay protection (colonies.replay): nonces seen within the replay window.
CREATE TABLE nonces (
    nonce TEXT NOT NULL,
    signer TEXT NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (nonce, signer)
) WITHOUT ROWID;
CREATE INDEX nonces_by_expiry ON nonces (expires);
