console.log('demo: coming with the CLI');
