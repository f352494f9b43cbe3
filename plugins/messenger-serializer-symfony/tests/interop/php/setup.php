<?php

/*
 * `messenger:setup-transports`: Symfony creates what its transports need (the Doctrine table
 * with its indexes and PostgreSQL trigger, the Redis stream and group, the AMQP exchange and
 * queue).
 *
 *   php setup.php CONFIG.json
 */

declare(strict_types=1);

require __DIR__.'/bootstrap.php';

use Symfony\Component\Messenger\Transport\SetupableTransportInterface;

$config = interop_config($argv);
foreach (interop_transports($config, interop_serializer()) as $name => $transport) {
    if ($transport instanceof SetupableTransportInterface) {
        $transport->setup();
        echo "set up $name\n";
    }
}
